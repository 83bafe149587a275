"""The chapter-10 results table and its Pareto figure (latency vs accuracy, marker area ∝ size on disk)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.figure import Figure

__all__ = ["Variant", "format_table", "pareto_figure", "png"]


@dataclass
class Variant:
    """One deployed variant: accuracy ``acc`` ± ``se`` (fractions), median ``ms`` per batch."""

    name: str
    params: int
    macs: int
    size_bytes: int
    acc: float | None
    se: float | None
    ms: float
    speedup: float


def format_table(rows: list[Variant], best: str, batch: int, threads: int, load: tuple) -> str:
    """A plain-text table; speed-up = t(best fp32) / t, measured interleaved in one run."""
    head = f"{'variant':<26}{'params':>9}{'MMACs':>8}{'size KB':>9}{'accuracy':>18}{'ms':>8}{'speed-up':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "n/a" if r.acc is None else f"{100 * r.acc:.2f} % ± {100 * (r.se or 0):.2f}"
        lines.append(
            f"{r.name:<26}{r.params:>9,}{r.macs / 1e6:>8.1f}{r.size_bytes / 1024:>9.0f}{acc:>18}"
            f"{r.ms:>8.2f}{r.speedup:>9.2f}×"
        )
    la = ", ".join("?" if v is None else f"{v:.1f}" for v in load)
    lines.append(
        f"batch {batch}, {threads} thread(s), median of interleaved rounds; speed-up vs the best fp32 "
        f"({best}); load average before/after: {la}"
    )
    return "\n".join(lines)


def pareto_figure(rows: list[Variant], title: str) -> Figure:
    """Latency (x, log) vs accuracy (y, ±1 SE bars); marker area proportional to size on disk.
    The Pareto front (no other variant is both faster and more accurate) is joined by a line."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    pts = [r for r in rows if r.acc is not None]
    biggest = max(r.size_bytes for r in pts)
    for r in pts:
        ax.errorbar(r.ms, 100 * r.acc, yerr=100 * (r.se or 0), fmt="none", ecolor="0.6", lw=1)
        ax.scatter(r.ms, 100 * r.acc, s=40 + 400 * r.size_bytes / biggest, alpha=0.6)
        ax.annotate(r.name, (r.ms, 100 * r.acc), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front, best_acc = [], -1.0
    for r in sorted(pts, key=lambda r: r.ms):
        if r.acc > best_acc:
            front.append(r)
            best_acc = r.acc
    ax.plot([r.ms for r in front], [100 * r.acc for r in front], "k--", lw=0.8, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("median latency per batch (ms, log scale)")
    ax.set_ylabel("test accuracy (%) ± 1 SE")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def png(fig: Figure):
    """The figure as an ``IPython.display.Image`` (PNG): renders in every frontend and in nbval output."""
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return Image(buf.getvalue())
