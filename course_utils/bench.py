"""``python -m course_utils bench``: the course benchmark report, measured in one run on this machine.

Builds every compressed variant of the course CNN from the same fp32 weights — dynamic int8,
static int8 (PTQ), QAT int8, 50 % of conv channels removed, 90 % unstructured sparsity — and
measures accuracy, parameters, size on disk and FLOPs. Latency comes from one *interleaved* run
per thread count (:mod:`course_utils.speed`) that also times the fp32 baselines one could deploy
instead (BN folded, ``channels_last``, ``torch.compile``) and int8 via PT2E compiled; every
speed-up is against the **best** fp32 of that run (``× = t_best_fp32 / t``), and ``size × =
bytes_fp32 / bytes``. Then it times every lesson and solution notebook and the grader per
submission, and writes ``reports/benchmarks.md``, ``benchmarks.png`` and ``benchmarks.json``
(modules ``bench_course`` and ``bench_report``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .bench_course import (  # re-exported: the bench's notebook and grader timing
    GradingRow,
    NotebookRow,
    course_notebooks,
    grading_chapters,
    time_grading,
    time_notebooks,
)
from .bench_models import (  # re-exported: the variants, their measurements and the targets
    SIZE_TARGETS,
    SPEED_TARGETS,
    ModelRow,
    Target,
    available_threads,
    build_variants,
    measure_variants,
    targets,
)
from .bench_report import fmt_load, plot_report, render_markdown

__all__ = [
    "SIZE_TARGETS",
    "SPEED_TARGETS",
    "BenchConfig",
    "GradingRow",
    "ModelRow",
    "NotebookRow",
    "Target",
    "course_notebooks",
    "grading_chapters",
    "machine_info",
    "main",
    "run",
    "time_grading",
    "time_notebooks",
]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchConfig:
    """What to measure and how long; ``--quick`` shortens timing and fine-tuning."""

    out: Path = Path("reports")
    root: Path = ROOT
    batch: int = 64
    min_run_time: float = 0.2  # seconds per timed block of calls (one block per variant per round)
    rounds: int = 15  # interleaved rounds (all variants, rotated order); the report shows the median
    compile: bool = True  # time torch.compile rows (fp32 and int8 PT2E); False marks them n/a
    epochs: int = 2  # fine-tuning epochs after pruning, and QAT epochs
    train_limit: int | None = None  # use only the first N training images (smoke tests)
    notebooks: bool = True
    grading: bool = True
    quick: bool = False
    progress: bool = True


# --- machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    """CPU model, cores and threads this process may use, torch version, quantized engine, and
    the int8-relevant CPU features (``torch.backends.cpu.get_cpu_capability()``, VNNI, AMX)."""
    from .speed import cpu_summary

    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return {
        "cpu": _cpu_model(),
        "physical_cores": cores,
        "threads": available_threads(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        **{f"cpu_{k}": v for k, v in cpu_summary().items() if k != "quantized_engine"},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load_average_start": _load_average(),
    }


# --- entry point -------------------------------------------------------------------------------


def _verdict(c: Target) -> str:
    if not c.counted:
        return "(info) met" if c.passed else "(info) not met"
    return "PASS" if c.passed else "FAIL"


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
    rows, speed_tables = measure_variants(variants, splits, loaders, cfg)
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
    plot_report(rows, speed_tables, nb_rows or [], cfg.batch, plot)
    seconds = time.perf_counter() - t_start
    machine["load_average_end"] = _load_average()
    machine["cpu_seconds"] = _cpu_seconds() - cpu_start
    md = render_markdown(
        machine, cfg, rows, speed_tables, checks, nb_rows, grade_rows, grading_note, seconds, plot.name
    )
    report = cfg.out / "benchmarks.md"
    report.write_text(md, encoding="utf-8")
    data = {
        "machine": machine,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "models": [asdict(r) for r in rows],
        "speed": {
            str(t): {
                **{k: v for k, v in asdict(tab).items() if k != "rows"},
                "rows": [asdict(r) for r in tab.rows],
            }
            for t, tab in speed_tables.items()
        },
        "targets": [{**asdict(c), "passed": c.passed} for c in checks],
        "all_targets_met": all(c.passed for c in checks if c.counted),
        "notebooks": [asdict(r) for r in nb_rows or []],
        "grading": [{**asdict(g), "per_submission": g.per_submission} for g in grade_rows or []],
        "seconds": seconds,
    }
    (cfg.out / "benchmarks.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    print()
    for t, tab in speed_tables.items():
        print(f"Speed at {t} thread(s), every ratio against the best fp32 of the same interleaved run:")
        print(tab, end="\n\n")
    for r in rows:
        lat = " · ".join(
            f"{ms:.3g} ms ({r.speedup[t]:.2f}× vs best fp32) at {t}T"
            for t, ms in sorted(r.latency_ms.items())
        )
        print(
            f"{r.name:>17}: acc {100 * r.accuracy:.2f}% ± {100 * r.accuracy_se:.2f} · "
            f"{r.size_bytes / 1024:.0f} KB ({r.size_ratio:.2f}×) · {lat}"
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
        f"({machine['cpu_seconds'] / 60:.1f} CPU-min; load average {fmt_load(machine['load_average_start'])} → "
        f"{fmt_load(machine['load_average_end'])})."
    )
    return report, checks


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_utils bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short smoke run: 1 epoch, 3 rounds, 0.05 s blocks")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports)")
    p.add_argument(
        "--root", type=Path, default=ROOT, help="course root with notebooks/, solutions/, exercises/"
    )
    p.add_argument("--batch", type=int, default=64, help="batch size for latency (default 64)")
    p.add_argument(
        "--min-run-time", type=float, help="seconds per timed block of calls (default 0.2, quick 0.05)"
    )
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (default 15, quick 3)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (marked n/a)")
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
        min_run_time=args.min_run_time if args.min_run_time is not None else (0.05 if quick else 0.2),
        rounds=args.rounds if args.rounds is not None else (3 if quick else 15),
        compile=not args.no_compile,
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
