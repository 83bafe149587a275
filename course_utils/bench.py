"""``python -m course_utils bench``: the course benchmark report, measured in one run on this machine.

Builds every compressed variant of the course CNN from the same fp32 weights — dynamic int8,
static int8 (PTQ), QAT int8, 50 % of conv channels removed, 90 % unstructured sparsity — and
measures accuracy, parameters, size on disk, FLOPs and median latency at 1 thread and at all
threads, each as a ratio to fp32 (``speed-up = t_fp32 / t``, ``size × = bytes_fp32 / bytes``).
Then it times every lesson and solution notebook and the grader per submission, and writes
``reports/benchmarks.md``, ``benchmarks.png`` and ``benchmarks.json``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import torch
from torch import nn

__all__ = ["BenchConfig", "ModelRow", "Target", "machine_info", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]

# (variant, minimum, what is compared) — the chapter targets the report checks.
SPEED_TARGETS = {"static int8": 2.0, "QAT int8": 2.0, "50% channels": 1.5}
SIZE_TARGETS = {"static int8": 3.5, "QAT int8": 3.5}


@dataclass
class BenchConfig:
    """What to measure and how long; ``--quick`` shortens timing and fine-tuning."""

    out: Path = Path("reports")
    root: Path = ROOT
    batch: int = 64
    min_run_time: float = 1.0  # seconds per latency measurement (torch.utils.benchmark)
    rounds: int = 3  # latency rounds, interleaved across models; the report shows their median
    epochs: int = 2  # fine-tuning epochs after pruning, and QAT epochs
    train_limit: int | None = None  # use only the first N training images (smoke tests)
    notebooks: bool = True
    grading: bool = True
    quick: bool = False
    progress: bool = True


@dataclass
class ModelRow:
    """One variant's measurements; ratios are relative to fp32."""

    name: str
    how: str
    accuracy: float
    params: int
    nonzero: int
    size_bytes: int
    flops: int | None
    flops_note: str
    latency_ms: dict[int, float]  # threads -> median ms
    speedup: dict[int, float] = field(default_factory=dict)
    size_ratio: float = 1.0


@dataclass
class Target:
    """A chapter target and whether this run met it; ``counted=False`` rows are shown for information."""

    what: str
    value: float
    minimum: float
    counted: bool = True

    @property
    def passed(self) -> bool:
        return self.value >= self.minimum


# --- machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this OS
        return None


def _cpu_seconds() -> float:
    """CPU seconds used by this process and its finished children (kernels, the grader)."""
    try:
        import resource
    except ImportError:  # not Unix
        return time.process_time()
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine_info() -> dict[str, Any]:
    """CPU model, cores and threads this process may use, torch version, quantized engine."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return {
        "cpu": _cpu_model(),
        "physical_cores": cores,
        "threads": _threads(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load_average_start": _load_average(),
    }


# --- models ------------------------------------------------------------------------------------


def build_variants(cfg: BenchConfig, loaders: dict, bar: Any) -> dict[str, tuple[nn.Module, str]]:
    """Every variant from the same pretrained fp32 weights: ``{name: (model, how it was made)}``."""
    from . import pruning as P
    from . import quantization as Q
    from .training import pretrained, seed_everything

    seed_everything(0)
    e = cfg.epochs
    fp32 = pretrained("course_cnn_quant", progress=cfg.progress)  # stubs are identities in fp32
    out: dict[str, tuple[nn.Module, str]] = {
        "fp32": (fp32, "pretrained CourseCNN (Conv-BN-ReLU ×2, Linear ×2)")
    }
    bar.set_postfix_str("dynamic int8")
    out["dynamic int8"] = (
        Q.dynamic_ptq(fp32),
        "quantize_dynamic: Linear weights int8, activations per batch",
    )
    bar.update()
    bar.set_postfix_str("static int8")
    static = Q.static_ptq(fp32, loaders["train"], num_batches=8)
    out["static int8"] = (static, "fuse → prepare → calibrate 8 train batches → convert (x86)")
    bar.update()
    bar.set_postfix_str("QAT int8")
    qat = Q.prepare_qat_model(fp32)
    Q.qat_finetune(
        qat,
        loaders,
        epochs=e,
        freeze_bn_epoch=1 if e > 1 else None,
        freeze_observer_epoch=e - 1 if e > 1 else None,
        progress=cfg.progress,
    )
    out["QAT int8"] = (Q.convert_qat(qat), f"fuse_qat → prepare_qat → {e} epoch(s) QAT → convert")
    bar.update()
    bar.set_postfix_str("50% channels")
    slim = P.remove_channels(fp32, 0.5, n=2)
    P.finetune(slim, loaders, epochs=e, progress=cfg.progress, desc="fine-tune 50% channels")
    c1, c2 = slim.features[0].out_channels, slim.features[4].out_channels
    out["50% channels"] = (
        slim,
        f"drop half the conv channels by L2 norm ({c1}, {c2} kept), {e} epoch(s) fine-tune",
    )
    bar.update()
    bar.set_postfix_str("90% unstructured")
    sparse = P.global_magnitude_prune(copy.deepcopy(fp32), 0.9)
    P.finetune(sparse, loaders, epochs=e, progress=cfg.progress, desc="fine-tune 90% sparse")
    P.make_permanent(sparse)
    out["90% unstructured"] = (
        sparse,
        f"global L1 90% (masks kept at 0), {e} epoch(s) fine-tune, dense storage",
    )
    bar.update()
    return out


def _float_twin_flops(name: str, fp32: nn.Module, x: torch.Tensor) -> tuple[int | None, str]:
    """FlopCounterMode cannot see quantized ops: count the float graph the int8 model came from."""
    from .metrics import count_flops

    if name == "dynamic int8":
        return count_flops(fp32, x), "float graph; Linear MACs run in int8"
    from .quantization import fuse_course_cnn

    return count_flops(
        fuse_course_cnn(copy.deepcopy(fp32).eval()), x
    ), "fused float graph; all MACs run in int8"


def measure_variants(
    variants: dict[str, tuple[nn.Module, str]], splits: Any, loaders: dict, cfg: BenchConfig, bar: Any
) -> list[ModelRow]:
    """Accuracy, counts, size, FLOPs and latency (median over interleaved rounds) of every variant."""
    from .metrics import (
        count_flops,
        count_nonzero_parameters,
        count_parameters,
        measure_latency,
        model_size_bytes,
    )
    from .training import evaluate

    x = splits.example_input(cfg.batch)
    one = splits.example_input(1)
    fp32 = variants["fp32"][0]
    rows: dict[str, ModelRow] = {}
    for name, (model, how) in variants.items():
        flops, note = count_flops(model, one), "per image"
        if flops is None:
            flops, note = _float_twin_flops(name, fp32, one)
        rows[name] = ModelRow(
            name=name,
            how=how,
            accuracy=evaluate(model, loaders["test"]),
            params=count_parameters(model),
            nonzero=count_nonzero_parameters(model),
            size_bytes=model_size_bytes(model),
            flops=flops,
            flops_note=note,
            latency_ms={},
        )
    thread_counts = sorted({1, _threads()})
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(cfg.rounds):  # interleave so that a noisy moment hits every model alike
        for threads in thread_counts:
            for name, (model, _how) in variants.items():
                bar.set_postfix_str(f"{name}, {threads} thread(s)")
                lat = measure_latency(model, x, threads=threads, min_run_time=cfg.min_run_time)
                samples.setdefault((name, threads), []).append(lat.median_ms)
                bar.update()
    base = rows["fp32"]
    for (name, threads), ms in samples.items():
        rows[name].latency_ms[threads] = median(ms)
    for row in rows.values():
        row.speedup = {t: base.latency_ms[t] / ms for t, ms in row.latency_ms.items()}
        row.size_ratio = base.size_bytes / row.size_bytes
    return list(rows.values())


def targets(rows: list[ModelRow]) -> list[Target]:
    """The chapter targets: int8 ≥ 2× faster and ≥ 3.5× smaller; 50 % channels ≥ 1.5× faster.

    Speed targets count at 1 thread (how the lessons measure latency); the all-threads ratios
    are listed too, for information, because on a shared machine they are the noisiest.
    """
    by = {r.name: r for r in rows}
    out = []
    for name, minimum in SPEED_TARGETS.items():
        for threads, s in sorted(by[name].speedup.items()):
            t = "thread" if threads == 1 else "threads"
            out.append(Target(f"{name} faster than fp32 ({threads} {t})", s, minimum, counted=threads == 1))
    for name, minimum in SIZE_TARGETS.items():
        out.append(Target(f"{name} smaller than fp32 (state_dict bytes)", by[name].size_ratio, minimum))
    return out


def _verdict(c: Target) -> str:
    if not c.counted:
        return "(info) met" if c.passed else "(info) not met"
    return "PASS" if c.passed else "FAIL"


# --- notebooks and grading ---------------------------------------------------------------------


@dataclass
class NotebookRow:
    path: str
    seconds: float
    status: str


def course_notebooks(root: Path) -> list[Path]:
    """Lessons (``notebooks/``) then solutions (``solutions/``), each sorted by name."""
    return [p for folder in ("notebooks", "solutions") for p in sorted((root / folder).glob("*.ipynb"))]


def time_notebooks(paths: list[Path], root: Path, bar: Any) -> list[NotebookRow]:
    """Wall seconds to execute each notebook top to bottom in a fresh kernel (nothing is written)."""
    from .notebooks import execute_notebook

    rows = []
    for path in paths:
        bar.set_postfix_str(path.name)
        t0 = time.perf_counter()
        try:
            execute_notebook(path, timeout=600, write=False)
            status = "ok"
        except Exception as err:  # a failing notebook is reported, not fatal to the report
            first = str(err).strip().splitlines()[-1:] or [""]
            status = f"failed: {type(err).__name__} {first[0][:80]}".strip()
        rows.append(NotebookRow(str(path.relative_to(root)), time.perf_counter() - t0, status))
        bar.update()
    return rows


@dataclass
class GradingRow:
    chapter: str
    submissions: int
    seconds: float
    scores: dict[str, str]
    status: str

    @property
    def per_submission(self) -> float:
        return self.seconds / max(self.submissions, 1)


def grading_chapters(root: Path) -> list[str]:
    """Chapters with both a solution and a released exercise notebook."""
    return [
        p.stem for p in sorted((root / "solutions").glob("*.ipynb")) if (root / "exercises" / p.name).exists()
    ]


def time_grading(
    chapters: list[str],
    root: Path,
    bar: Any,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> list[GradingRow]:
    """Grade two submissions per chapter with the grader CLI, one at a time (``--jobs 1``): the
    solution (should score full marks) and the untouched exercise (should score 0)."""
    rows = []
    for chapter in chapters:
        bar.set_postfix_str(chapter)
        with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
            subs, out = Path(tmp) / "subs", Path(tmp) / "out"
            subs.mkdir()
            shutil.copy(root / "solutions" / f"{chapter}.ipynb", subs / "solution.ipynb")
            shutil.copy(root / "exercises" / f"{chapter}.ipynb", subs / "blank.ipynb")
            cmd = [sys.executable, "-m", "course_utils", "grade", chapter, str(subs), "--out", str(out)]
            t0 = time.perf_counter()
            proc = runner([*cmd, "--jobs", "1", "--quiet"], cwd=root, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            scores: dict[str, str] = {}
            if proc.returncode == 0 and (out / "grades.csv").exists():
                with (out / "grades.csv").open(newline="") as f:
                    scores = {r["student"]: f"{r['score']}/{r['max_score']}" for r in csv.DictReader(f)}
                status = "ok"
            else:
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or [""]
                status = f"grader exited {proc.returncode}: {tail[0][:100]}"
        rows.append(GradingRow(chapter, 2, seconds, scores, status))
        bar.update()
    return rows


# --- report ------------------------------------------------------------------------------------


def _fmt_flops(f: int | None) -> str:
    if f is None:
        return "n/a"
    return f"{f / 1e6:.2f} M"


def _plot(rows: list[ModelRow], nb_rows: list[NotebookRow], batch: int, path: Path) -> None:
    from matplotlib.figure import Figure

    names = [r.name for r in rows]
    threads = sorted(rows[0].latency_ms)
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(13, 8.5), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    width = 0.8 / len(threads)
    for i, t in enumerate(threads):
        xs = [k + (i - (len(threads) - 1) / 2) * width for k in range(len(rows))]
        vals = [r.speedup[t] for r in rows]
        ax1.bar(xs, vals, width, label=f"{t} thread{'s' if t > 1 else ''}")
        for x, v in zip(xs, vals):
            ax1.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax1.axhline(2.0, ls="--", color="tab:red", lw=1, label="int8 target 2×")
    ax1.axhline(1.5, ls=":", color="tab:purple", lw=1, label="50% channels target 1.5×")
    ax1.axhline(1.0, color="gray", lw=0.8)
    ax1.set_yscale("log")
    times = FuncFormatter(lambda v, _: f"{v:g}×")
    ax1.yaxis.set_major_formatter(times)
    ax1.yaxis.set_minor_formatter(times)
    ax1.set(title=f"Speed-up vs fp32 (median latency, batch {batch})", ylabel="× faster (log scale)")
    ax1.legend(fontsize="small")
    ax2.bar(names, [r.size_ratio for r in rows], color="tab:green")
    ax2.axhline(3.5, ls="--", color="tab:red", lw=1, label="int8 target 3.5×")
    ax2.set(title="Size on disk vs fp32 (state_dict)", ylabel="× smaller")
    ax2.legend(fontsize="small")
    accs = [100 * r.accuracy for r in rows]
    ax3.bar(names, accs, color="tab:orange")
    lo = max(0.0, min(accs) - 5)
    ax3.set(title="Test accuracy (digits, 359 images)", ylabel="accuracy (%)", ylim=(lo, 100))
    for k, a in enumerate(accs):
        ax3.text(k, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    if nb_rows:
        ax4.barh([Path(r.path).stem + (" (sol)" if r.path.startswith("solutions") else "") for r in nb_rows],
                 [r.seconds for r in nb_rows], color=["tab:blue" if r.status == "ok" else "tab:red" for r in nb_rows])  # fmt: skip
        ax4.invert_yaxis()
        ax4.axvline(60, ls="--", color="gray", lw=1, label="lesson budget 60 s")
        ax4.axvline(20, ls=":", color="gray", lw=1, label="solution budget 20 s")
        ax4.legend(fontsize="small")
        ax4.tick_params(axis="y", labelsize=8)
        ax4.set(title="Notebook execution time", xlabel="seconds")
    else:
        ax4.set_axis_off()
        ax4.text(0.5, 0.5, "notebooks not timed (--skip-notebooks)", ha="center", va="center")
    fig.suptitle("compression-course benchmark: CourseCNN on digits")
    fig.savefig(path, dpi=90)


def _fmt_load(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _md_table(head: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown(
    machine: dict[str, Any],
    cfg: BenchConfig,
    rows: list[ModelRow],
    checks: list[Target],
    nb_rows: list[NotebookRow] | None,
    grade_rows: list[GradingRow] | None,
    grading_note: str,
    seconds: float,
    plot_name: str,
) -> str:
    threads = sorted(rows[0].latency_ms)
    cores = machine["physical_cores"]
    out = [
        "# Course benchmark report",
        "",
        f"Measured by `python -m course_utils bench{' --quick' if cfg.quick else ''}` on {machine['date']} "
        f"in {seconds / 60:.1f} min"
        + (f" (**trained on only {cfg.train_limit} images**)" if cfg.train_limit else "")
        + ". Reproduce with `make bench` (or `.venv/bin/python -m course_utils bench`; "
        "`--quick` for a short smoke run). Timings are medians on a shared machine: compare ratios, "
        "not milliseconds across machines.",
        "",
        "## Machine",
        "",
        *_md_table(
            ["CPU", "cores / threads", "torch", "quantized engine", "Python", "platform"],
            [
                [
                    machine["cpu"],
                    f"{cores if cores else '?'} / {machine['threads']}",
                    machine["torch"],
                    machine["quantized_engine"],
                    machine["python"],
                    machine["platform"],
                ]
            ],
        ),
        "",
        f"Busy-ness: 1-min load average {_fmt_load(machine.get('load_average_start'))} at the start and "
        f"{_fmt_load(machine.get('load_average_end'))} at the end (≈ {machine['threads']} or less means this run had "
        f"the machine to itself); the run used {machine.get('cpu_seconds', 0) / 60:.1f} CPU-minutes (with its "
        f"kernels and grader) in {seconds / 60:.1f} wall-minutes. A load well above the thread count "
        "inflates every latency, most of all the all-threads ones.",
        "",
        f"## Models (batch {cfg.batch}; latency = median of {cfg.rounds} interleaved rounds × "
        f"≥ {cfg.min_run_time:g} s each)",
        "",
    ]
    head = ["variant", "accuracy", "params", "nonzero", "size (KB)", "size ×", "FLOPs / image"]
    for t in threads:
        head += [f"latency {t}T (ms)", f"speed-up {t}T"]
    body = []
    for r in rows:
        cells = [
            f"**{r.name}**",
            f"{100 * r.accuracy:.2f}%",
            f"{r.params:,}",
            f"{r.nonzero:,}",
            f"{r.size_bytes / 1024:.1f}",
            f"{r.size_ratio:.2f}×",
            _fmt_flops(r.flops) + ("" if r.flops_note == "per image" else "†"),
        ]
        for t in threads:
            cells += [f"{r.latency_ms[t]:.3g}", f"{r.speedup[t]:.2f}×"]
        body.append(cells)
    out += _md_table(head, body)
    out += ["", "How each variant was made (all from the same fp32 weights):", ""]
    out += [f"- **{r.name}**: {r.how}" for r in rows]
    out += [
        "",
        "† `FlopCounterMode` does not see quantized kernels; the count is that of the float graph "
        "the int8 model was converted from (the same multiply-adds, executed in int8).",
        "",
        "## Targets",
        "",
        *_md_table(
            ["target", "measured", "minimum", "result"],
            [
                [c.what, f"{c.value:.2f}×", f"{c.minimum:g}×", "PASS" if c.passed else "**FAIL**"]
                for c in checks
            ],
        ),
        "",
        "Unstructured sparsity and dynamic quantization have no speed target: dense kernels still "
        "multiply the zeros of the 90 % sparse model, and dynamic quantization only converts the "
        "Linear layers (here most of the time is spent in the convolutions).",
        "",
        "## Notebooks",
        "",
    ]
    if nb_rows is None:
        out.append("Not timed in this run (`--skip-notebooks`).")
    elif not nb_rows:
        out.append("No lesson or solution notebooks found.")
    else:
        out += [
            "Each notebook executed top to bottom in a fresh kernel (budget: lesson < 60 s, solution < 20 s).",
            "",
        ]
        out += _md_table(
            ["notebook", "seconds", "status"], [[r.path, f"{r.seconds:.1f}", r.status] for r in nb_rows]
        )
        total = sum(r.seconds for r in nb_rows)
        out += ["", f"Total {total:.0f} s for {len(nb_rows)} notebooks."]
    out += ["", "## Grading", ""]
    if grade_rows is None or not grade_rows:
        out.append(grading_note)
    else:
        out += [
            "The grader CLI (`python -m course_utils grade CHAPTER subs/ --jobs 1`) on two submissions per "
            "chapter: the solution notebook and the untouched exercise notebook. Seconds include "
            "starting the grader and one kernel per submission.",
            "",
        ]
        out += _md_table(
            ["chapter", "submissions", "seconds", "s / submission", "solution score", "blank score", "status"],
            [[g.chapter, str(g.submissions), f"{g.seconds:.1f}", f"{g.per_submission:.1f}",
              g.scores.get("solution", "–"), g.scores.get("blank", "–"), g.status] for g in grade_rows],
        )  # fmt: skip
    out += ["", f"![benchmark plot]({plot_name})", ""]
    return "\n".join(out)


# --- entry point -------------------------------------------------------------------------------


def run(cfg: BenchConfig) -> tuple[Path, list[Target]]:
    """Measure everything in ``cfg`` and write the report; returns its path and the targets."""
    from tqdm.auto import tqdm

    from .data import load_digits_dataset
    from .deprecations import filter_known_deprecations

    t_start, cpu_start = time.perf_counter(), _cpu_seconds()
    filter_known_deprecations(
        verbose=False
    )  # eager torch.ao.quantization: deprecated since 2.8, works in 2.14
    machine = machine_info()
    cores = machine["physical_cores"] or "?"
    print(
        f"Machine: {machine['cpu']} · {cores} cores / {machine['threads']} threads · torch {machine['torch']} "
        f"· quantized engine {machine['quantized_engine']} · Python {machine['python']}",
        flush=True,
    )
    splits = load_digits_dataset()
    loaders = splits.loaders(64, seed=0)
    if cfg.train_limit is not None:
        from torch.utils.data import DataLoader, Subset

        subset = Subset(splits.train, range(min(cfg.train_limit, len(splits.train))))
        loaders["train"] = DataLoader(
            subset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
    with tqdm(total=5, desc="build variants", disable=not cfg.progress) as bar:
        variants = build_variants(cfg, loaders, bar)
    n_lat = cfg.rounds * len(variants) * len({1, _threads()})
    with tqdm(total=n_lat, desc="measure latency", disable=not cfg.progress) as bar:
        rows = measure_variants(variants, splits, loaders, cfg, bar)
    checks = targets(rows)

    nb_rows: list[NotebookRow] | None = None
    if cfg.notebooks:
        paths = course_notebooks(cfg.root)
        with tqdm(total=len(paths), desc="execute notebooks", disable=not cfg.progress) as bar:
            nb_rows = time_notebooks(paths, cfg.root, bar)

    grade_rows: list[GradingRow] | None = None
    grading_note = "Not timed in this run (`--skip-grading`)."
    if cfg.grading:
        try:
            import course_utils.grading.cli  # noqa: F401
        except ImportError as err:
            grading_note = f"Skipped: the grader (`course_utils.grading.cli`) is not importable ({err})."
        else:
            chapters = grading_chapters(cfg.root)
            if not chapters:
                grading_note = "Skipped: no chapter has both solutions/NN.ipynb and exercises/NN.ipynb yet."
            with tqdm(total=len(chapters), desc="grade submissions", disable=not cfg.progress) as bar:
                grade_rows = time_grading(chapters, cfg.root, bar)

    cfg.out.mkdir(parents=True, exist_ok=True)
    plot = cfg.out / "benchmarks.png"
    _plot(rows, nb_rows or [], cfg.batch, plot)
    seconds = time.perf_counter() - t_start
    machine["load_average_end"] = _load_average()
    machine["cpu_seconds"] = _cpu_seconds() - cpu_start
    md = render_markdown(machine, cfg, rows, checks, nb_rows, grade_rows, grading_note, seconds, plot.name)
    report = cfg.out / "benchmarks.md"
    report.write_text(md, encoding="utf-8")
    data = {
        "machine": machine,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "models": [asdict(r) for r in rows],
        "targets": [{**asdict(c), "passed": c.passed} for c in checks],
        "all_targets_met": all(c.passed for c in checks if c.counted),
        "notebooks": [asdict(r) for r in nb_rows or []],
        "grading": [{**asdict(g), "per_submission": g.per_submission} for g in grade_rows or []],
        "seconds": seconds,
    }
    (cfg.out / "benchmarks.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    print()
    for r in rows:
        lat = " · ".join(
            f"{ms:.3g} ms ({r.speedup[t]:.2f}×) at {t}T" for t, ms in sorted(r.latency_ms.items())
        )
        print(
            f"{r.name:>17}: acc {100 * r.accuracy:.2f}% · {r.size_bytes / 1024:.0f} KB ({r.size_ratio:.2f}×) · {lat}"
        )
    print(f"(latency: median, batch {cfg.batch})")
    for c in checks:
        print(f"{_verdict(c):<14} {c.what}: {c.value:.2f}× (≥ {c.minimum:g}×)")
    for nb in nb_rows or []:
        print(f"notebook {nb.path}: {nb.seconds:.1f} s {nb.status}")
    for g in grade_rows or []:
        print(f"grading {g.chapter}: {g.per_submission:.1f} s per submission ({g.status}; {g.scores})")
    if grade_rows is None or not grade_rows:
        print(grading_note)
    print(
        f"Wrote {report}, {plot} and {cfg.out / 'benchmarks.json'} in {seconds / 60:.1f} min "
        f"({machine['cpu_seconds'] / 60:.1f} CPU-min; load average {_fmt_load(machine['load_average_start'])} → "
        f"{_fmt_load(machine['load_average_end'])})."
    )
    return report, checks


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_utils bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short smoke run: 1 epoch, 1 round, 0.2 s per timing")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports)")
    p.add_argument(
        "--root", type=Path, default=ROOT, help="course root with notebooks/, solutions/, exercises/"
    )
    p.add_argument("--batch", type=int, default=64, help="batch size for latency (default 64)")
    p.add_argument(
        "--min-run-time", type=float, help="seconds per latency measurement (default 1, quick 0.2)"
    )
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (default 3, quick 1)")
    p.add_argument("--epochs", type=int, help="fine-tune / QAT epochs (default 2, quick 1)")
    p.add_argument("--train-limit", type=int, help="train/calibrate on the first N images only (smoke tests)")
    p.add_argument("--skip-notebooks", action="store_true", help="do not time the notebooks")
    p.add_argument("--skip-grading", action="store_true", help="do not time the grader")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils bench [--quick] [--out reports] ...``; returns the exit status."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    quick = args.quick
    cfg = BenchConfig(
        out=args.out,
        root=args.root.resolve(),
        batch=args.batch,
        min_run_time=args.min_run_time if args.min_run_time is not None else (0.2 if quick else 1.0),
        rounds=args.rounds if args.rounds is not None else (1 if quick else 3),
        epochs=args.epochs if args.epochs is not None else (1 if quick else 2),
        train_limit=args.train_limit,
        notebooks=not args.skip_notebooks,
        grading=not args.skip_grading,
        quick=quick,
        progress=not args.no_progress,
    )
    problems = []
    if cfg.batch < 1 or cfg.batch > 359:
        problems.append("--batch must be between 1 and 359 (the digits test set has 359 images)")
    if (
        cfg.min_run_time <= 0
        or cfg.rounds < 1
        or cfg.epochs < 1
        or (cfg.train_limit is not None and cfg.train_limit < 64)
    ):
        problems.append("--min-run-time must be > 0, --rounds >= 1, --epochs >= 1 and --train-limit >= 64")
    if cfg.notebooks and not (cfg.root / "notebooks").is_dir() and not (cfg.root / "solutions").is_dir():
        problems.append(
            f"--root {cfg.root} has no notebooks/ or solutions/ folder (or pass --skip-notebooks)"
        )
    if problems:
        for msg in problems:
            print(f"bench: error: {msg}", file=sys.stderr)
        return 2
    _, checks = run(cfg)
    return 1 if args.strict and not all(c.passed for c in checks if c.counted) else 0
