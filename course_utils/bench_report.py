"""Write the bench report: ``reports/benchmarks.md`` (tables) and ``benchmarks.png`` (plot)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .speed import faster_or_slower

if TYPE_CHECKING:
    from .bench import BenchConfig, ModelRow, Target
    from .bench_course import GradingRow, NotebookRow
    from .speed import SpeedTable

__all__ = ["fmt_load", "plot_report", "render_markdown"]


def _fmt_flops(f: int | None) -> str:
    if f is None:
        return "n/a"
    return f"{f / 1e6:.2f} M"


def plot_report(
    rows: list[ModelRow],
    speed_tables: dict[int, SpeedTable],
    nb_rows: list[NotebookRow],
    batch: int,
    path: Path,
) -> None:
    """Four panels: speed-up of every timed row vs the best fp32, size, accuracy ± SE, notebooks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    names = [r.name for r in rows]
    threads = sorted(speed_tables)
    speed_names = [r.name for r in speed_tables[threads[0]].rows]
    fig = Figure(figsize=(13, 9.5), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    width = 0.8 / len(threads)
    for i, t in enumerate(threads):
        xs = [k + (i - (len(threads) - 1) / 2) * width for k in range(len(speed_names))]
        vals = [speed_tables[t][n].vs_best_fp32 or 0.0 for n in speed_names]
        ax1.bar(xs, vals, width, label=f"{t} thread{'s' if t > 1 else ''}")
        for x, v in zip(xs, vals):
            ax1.text(x, v, f"{v:.1f}" if v else "n/a", ha="center", va="bottom", fontsize=6)
    ax1.axhline(2.0, ls="--", color="tab:red", lw=1, label="int8 target 2×")
    ax1.axhline(1.5, ls=":", color="tab:purple", lw=1, label="50% channels target 1.5×")
    ax1.axhline(1.0, color="gray", lw=0.8, label="best fp32")
    ax1.set_yscale("log")
    times = FuncFormatter(lambda v, _: f"{v:g}×")
    ax1.yaxis.set_major_formatter(times)
    ax1.yaxis.set_minor_formatter(times)
    ax1.set(
        title=f"Speed-up vs the BEST fp32 (interleaved medians, batch {batch})", ylabel="× faster (log scale)"
    )
    ax1.set_xticks(range(len(speed_names)), speed_names, rotation=30, ha="right", fontsize=7)
    ax1.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize="x-small")
    ax2.bar(names, [r.size_ratio for r in rows], color="tab:green")
    ax2.axhline(3.5, ls="--", color="tab:red", lw=1, label="int8 target 3.5×")
    ax2.set(title="Size on disk vs fp32 (state_dict)", ylabel="× smaller")
    ax2.legend(fontsize="small")
    accs = [100 * r.accuracy for r in rows]
    ax3.bar(names, accs, yerr=[100 * r.accuracy_se for r in rows], capsize=3, color="tab:orange")
    lo = max(0.0, min(accs) - 5)
    ax3.set(title="Test accuracy ± 1 binomial SE (digits test set)", ylabel="accuracy (%)", ylim=(lo, 100))
    for k, a in enumerate(accs):
        ax3.text(k, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    for ax in (ax2, ax3):
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


def fmt_load(x: float | None) -> str:
    """A load average to one decimal, or ``n/a``."""
    return "n/a" if x is None else f"{x:.1f}"


def _md_table(head: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def headlines(speed_tables: dict[int, SpeedTable]) -> list[str]:
    """One sentence per (variant, thread count): × vs the best fp32, and how much of the old
    "× vs fp32 eager NCHW" figure was layout/compiler rather than int8 or pruning."""
    out = []
    for t, tab in sorted(speed_tables.items()):
        th = f"{t} thread{'s' if t > 1 else ''}"
        for name in (
            "int8 eager (static PTQ)",
            "int8 PT2E + torch.compile",
            "50% channels BN folded, channels_last",
        ):
            try:
                r = tab[name]
            except KeyError:
                continue
            if r.vs_best_fp32 is None:
                out.append(f"{name} ({th}): not timed — {r.how}")
                continue
            out.append(
                f"**{name}: {faster_or_slower(r.vs_best_fp32)} than the best fp32** ({tab.best_fp32}), "
                f"{th}, batch {tab.batch}; {r.vs_first:.2f}× vs fp32 eager NCHW "
                f"(load average {fmt_load(tab.load_before)} → {fmt_load(tab.load_after)})"
            )
    return out


def render_markdown(
    machine: dict[str, Any],
    cfg: BenchConfig,
    rows: list[ModelRow],
    speed_tables: dict[int, SpeedTable],
    checks: list[Target],
    nb_rows: list[NotebookRow] | None,
    grade_rows: list[GradingRow] | None,
    grading_note: str,
    seconds: float,
    plot_name: str,
) -> str:
    threads = sorted(speed_tables)
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
        "## Headline",
        "",
        *[f"- {line}" for line in headlines(speed_tables)],
        "",
        "## Machine",
        "",
        *_md_table(
            ["CPU", "cores / threads", "CPU capability", "torch", "quantized engine", "Python", "platform"],
            [
                [
                    machine["cpu"],
                    f"{cores if cores else '?'} / {machine['threads']}",
                    f"{machine.get('cpu_capability', '?')} (VNNI {machine.get('cpu_vnni')}, AMX {machine.get('cpu_amx')})",
                    machine["torch"],
                    machine["quantized_engine"],
                    machine["python"],
                    machine["platform"],
                ]
            ],
        ),
        "",
        f"Busy-ness: 1-min load average {fmt_load(machine.get('load_average_start'))} at the start and "
        f"{fmt_load(machine.get('load_average_end'))} at the end (≈ {machine['threads']} or less means this run had "
        f"the machine to itself); the run used {machine.get('cpu_seconds', 0) / 60:.1f} CPU-minutes (with its "
        f"kernels and grader) in {seconds / 60:.1f} wall-minutes. A load well above the thread count "
        "inflates every latency, most of all the all-threads ones. "
        f"int8 on this CPU: {machine.get('cpu_note', 'n/a')}.",
        "",
        "## Where the speed comes from (fp32 baselines vs int8, one interleaved run)",
        "",
        "Every variant below was timed in the same rounds (one block of calls per variant per round, "
        "rotated order), so a busy moment hits all alike; the ratio that counts is **× vs best fp32**. "
        "`× vs first row` is against fp32 eager NCHW, the baseline the course used to quote.",
        "",
    ]
    for t, tab in sorted(speed_tables.items()):
        out += [f"### {t} thread{'s' if t > 1 else ''}", "", tab.markdown(), ""]
    out += [
        f"## Models (batch {cfg.batch}; latency = median of {cfg.rounds} interleaved rounds × "
        f"≈ {cfg.min_run_time:g} s blocks; × = best fp32 latency / latency)",
        "",
    ]
    head = ["variant", "accuracy ± SE", "params", "nonzero", "size (KB)", "size ×", "FLOPs / image"]
    for t in threads:
        head += [f"latency {t}T (ms)", f"× vs best fp32 {t}T"]
    body = []
    for r in rows:
        cells = [
            f"**{r.name}**",
            f"{100 * r.accuracy:.2f}% ± {100 * r.accuracy_se:.2f}",
            f"{r.params:,}",
            f"{r.nonzero:,}",
            f"{r.size_bytes / 1024:.1f}",
            f"{r.size_ratio:.2f}×",
            _fmt_flops(r.flops) + ("" if r.flops_note == "per image" else "†"),
        ]
        for t in threads:
            ms, x = r.latency_ms.get(t), r.speedup.get(t)
            cells += ["n/a" if ms is None else f"{ms:.3g}", "n/a" if x is None else f"{x:.2f}×"]
        body.append(cells)
    out += _md_table(head, body)
    out += ["", "How each variant was made (all from the same fp32 weights):", ""]
    out += [
        f"- **{r.name}**: {r.how} (latency: "
        + ", ".join(f"row `{n}` at {t}T" for t, n in sorted(r.timed_as.items()))
        + ")"
        for r in rows
    ]
    out += [
        "",
        "† `FlopCounterMode` does not see quantized kernels; the count is that of the float graph "
        "the int8 model was converted from (the same multiply-adds, executed in int8).",
        "",
        "## Targets",
        "",
        "Speed targets count at 1 thread and are against the best fp32 of the interleaved run above "
        "(the all-threads rows are for information: on a shared machine they are the noisiest). "
        "Int8 targets depend on the CPU: VNNI/AMX multiply int8 natively, AVX2-only CPUs gain less.",
        "",
        *_md_table(
            ["target", "measured", "minimum", "result"],
            [
                [
                    c.what,
                    f"{c.value:.2f}×",
                    f"{c.minimum:g}×",
                    ("PASS" if c.passed else "**FAIL**")
                    if c.counted
                    else ("(info) met" if c.passed else "(info) not met"),
                ]
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
