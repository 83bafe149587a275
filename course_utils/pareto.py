"""The chapter-10 results table and its Pareto figure (latency vs accuracy, marker area ∝ size on disk)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

__all__ = ["Variant", "format_table", "pareto_figure", "place_labels", "png"]


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
    The Pareto front (no other variant is both faster and more accurate) is joined by a line.
    Labels are placed so that none overlaps another label or a marker (:func:`place_labels`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)  # a renderer, to measure the labels
    ax = fig.add_subplot()
    pts = [r for r in rows if r.acc is not None]
    biggest = max(r.size_bytes for r in pts)
    sizes = [40 + 400 * r.size_bytes / biggest for r in pts]
    for r, s in zip(pts, sizes):
        ax.errorbar(r.ms, 100 * r.acc, yerr=100 * (r.se or 0), fmt="none", ecolor="0.6", lw=1)
        ax.scatter(r.ms, 100 * r.acc, s=s, alpha=0.6)
    front, best_acc = [], -1.0
    for r in sorted(pts, key=lambda r: r.ms):
        if r.acc > best_acc:
            front.append(r)
            best_acc = r.acc
    ax.plot([r.ms for r in front], [100 * r.acc for r in front], "k--", lw=0.8, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # 1-2-3-5 ticks only: minor labels collide
    ax.margins(x=0.35, y=0.25)  # room for labels around the outermost points
    ax.set_xlabel("median latency per batch (ms, log scale)")
    ax.set_ylabel("test accuracy (%) ± 1 SE")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    place_labels(ax, [(r.ms, 100 * r.acc) for r in pts], [r.name for r in pts], sizes)
    return fig


#: a light backing under each label, so error bars and the front line do not cross the text
_TEXT_BOX = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}


def _marker_box(ax, xy: tuple[float, float], size: float) -> Bbox:
    """The display-space square around a scatter marker of area ``size`` (points²)."""
    cx, cy = ax.transData.transform(xy)
    r = 0.5 * math.sqrt(size) * ax.figure.dpi / 72
    return Bbox([[cx - r, cy - r], [cx + r, cy + r]])


def place_labels(
    ax, points: list[tuple[float, float]], names: list[str], sizes: list[float], fontsize: float = 7
) -> list:
    """Annotate ``points`` (data coordinates) with ``names`` so that no two labels overlap.

    Greedy: the most crowded points first; each label tries offsets on rings of growing radius
    (12 directions) and takes the first whose box — measured with the renderer — lies inside the
    axes and clear of every placed label and every marker; else the candidate with the least
    overlap. A label placed away from its point gets a leader line. Returns the annotations.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = [_marker_box(ax, xy, s) for xy, s in zip(points, sizes)]
    disp = [ax.transData.transform(xy) for xy in points]
    crowd = [sum(math.dist(a, b) < 80 for b in disp) for a in disp]
    order = sorted(range(len(points)), key=lambda i: -crowd[i])
    placed: list[Bbox] = []
    out = []
    angles = [math.radians(a) for a in (45, 135, -45, -135, 0, 180, 90, -90, 20, 160, -20, -160)]
    for i in order:
        radius0 = 0.5 * math.sqrt(sizes[i]) + 2  # points: just outside the marker
        ann = ax.annotate(names[i], points[i], fontsize=fontsize, textcoords="offset points", xytext=(0, 0))
        ann.set_bbox(_TEXT_BOX)
        best: tuple[float, tuple, Bbox] | None = None
        for radius in (radius0, radius0 + 10, radius0 + 22, radius0 + 36, radius0 + 52, radius0 + 72):
            for a in angles:
                dx, dy = radius * math.cos(a), radius * math.sin(a)
                ha = "left" if dx > 1e-6 else "right" if dx < -1e-6 else "center"
                va = "bottom" if dy > 1e-6 else "top" if dy < -1e-6 else "center"
                ann.set_position((dx, dy))
                ann.set_ha(ha)
                ann.set_va(va)
                box = ann.get_window_extent(renderer).padded(2)
                cost = sum(_area(box, b) for b in placed) + sum(_area(box, m) for m in markers)
                cost += box.width * box.height - _area(box, frame)  # the part outside the axes
                if best is None or cost < best[0]:
                    best = (cost, (dx, dy, ha, va, radius), box)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        ann.remove()  # the probe; the label itself, with a leader line when away from its marker
        dx, dy, ha, va, radius = best[1]
        arrow = {"arrowstyle": "-", "lw": 0.6, "color": "0.45", "shrinkA": 0, "shrinkB": 2}
        ann = ax.annotate(
            names[i],
            points[i],
            fontsize=fontsize,
            textcoords="offset points",
            xytext=(dx, dy),
            ha=ha,
            va=va,
            arrowprops=arrow if radius > radius0 else None,
            bbox=_TEXT_BOX,
        )
        placed.append(best[2])
        out.append(ann)
    return out


def _area(a: Bbox, b: Bbox) -> float:
    """Area of the intersection of two display-space boxes (0 when they do not meet)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def png(fig: Figure):
    """The figure as an ``IPython.display.Image`` (PNG): renders in every frontend and in nbval output."""
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return Image(buf.getvalue())
