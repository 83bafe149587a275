"""Figures for the lessons: weight histograms, mask heatmaps, sparsity curves, quantization error.

Every function builds a ``matplotlib.figure.Figure`` directly (not through ``pyplot``), so
nothing is shown twice and no global figure state leaks: return it as the last expression
of a cell (or ``display(fig)``) to show it, ``fig.savefig(...)`` to save it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

__all__ = [
    "plot_weight_histogram",
    "plot_mask",
    "plot_sparsity_curve",
    "plot_sensitivity",
    "plot_quantization_error",
    "plot_tensors",
    "plot_bn_folding",
]


def _np(t: torch.Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach()
        if t.is_quantized or (type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "dequantize")):
            t = t.dequantize()
        return t.float().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def _weights(source: nn.Module | torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: tensor}``: a module's effective ≥2-D weights (pruned/quantized aware), or as given."""
    if isinstance(source, torch.Tensor):
        return {"weight": source}
    if isinstance(source, nn.Module):
        from .metrics import effective_parameters

        out = {
            name.removesuffix(".weight"): t
            for name, t in effective_parameters(source)
            if name.endswith("weight") and t.dim() >= 2
        }
        if not out:
            raise ValueError(f"{type(source).__name__} has no Conv/Linear weights to plot.")
        return out
    if isinstance(source, Mapping):
        if not source:
            raise ValueError("Nothing to plot: the mapping of tensors is empty.")
        return dict(source)
    raise TypeError(f"Expected an nn.Module, a Tensor or a dict of Tensors, got {type(source).__name__}.")


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plot_weight_histogram(
    source: nn.Module | torch.Tensor | Mapping[str, torch.Tensor],
    bins: int = 80,
    exclude_zeros: bool = False,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """One histogram per Conv/Linear weight (or per tensor given), titled with its sparsity.

    A pruned layer shows a spike at 0 (or, with ``exclude_zeros=True``, a gap around 0:
    magnitude pruning removes the smallest |w|).
    """
    tensors = _weights(source)
    rows, cols = _grid(len(tensors))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, t) in zip(axes, tensors.items()):
        w = _np(t).ravel()
        zero_frac = float((w == 0).mean()) if w.size else 0.0
        if exclude_zeros:
            w = w[w != 0]
        ax.hist(w, bins=bins, color="tab:blue", log=log)
        ax.set_title(f"{name}  ({100 * zero_frac:.1f}% zeros)", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_xlabel("weight value")
        ax.set_ylabel("count")
    for ax in axes[len(tensors) :]:
        ax.set_visible(False)
    fig.suptitle(title or "Weight distributions" + (" (zeros excluded)" if exclude_zeros else ""))
    return fig


def _block_mean(a: np.ndarray, sr: int, sc: int) -> np.ndarray:
    """Mean over ``sr×sc`` blocks (edge blocks padded with NaN and averaged over real entries)."""
    if sr == 1 and sc == 1:
        return a
    r, c = math.ceil(a.shape[0] / sr) * sr, math.ceil(a.shape[1] / sc) * sc
    padded = np.full((r, c), np.nan, dtype=np.float32)
    padded[: a.shape[0], : a.shape[1]] = a
    return np.nanmean(padded.reshape(r // sr, sr, c // sc, sc), axis=(1, 3))


def plot_mask(
    source: nn.Module | torch.Tensor | Mapping[str, torch.Tensor],
    title: str | None = None,
    max_side: int = 256,
) -> Figure:
    """Heatmaps of where weights are zero (dark = pruned), one per tensor.

    A conv weight ``Cout×Cin×kh×kw`` is drawn as ``Cout`` rows × ``Cin·kh·kw`` columns, so a
    pruned filter (structured pruning) is a dark row and a pruned input channel a dark
    column band. Large matrices are subsampled to at most ``max_side`` per side (stated).
    """
    tensors = _weights(source)
    rows, cols = _grid(len(tensors), 3)
    fig = Figure(figsize=(3.8 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, t) in zip(axes, tensors.items()):
        a = _np(t)
        a = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
        kept = (a != 0).astype(np.float32)
        sr, sc = max(1, math.ceil(kept.shape[0] / max_side)), max(1, math.ceil(kept.shape[1] / max_side))
        shown = _block_mean(kept, sr, sc)
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        note = f", pixel = mean of {sr}×{sc}" if sr > 1 or sc > 1 else ""
        ax.set_title(
            f"{name}  {kept.shape[0]}×{kept.shape[1]}{note}\n{100 * (1 - kept.mean()):.1f}% zero", fontsize=9
        )
        ax.set_xlabel("input (Cin·k·k)" if t.dim() == 4 else "input")
        ax.set_ylabel("output")
    for ax in axes[len(tensors) :]:
        ax.set_visible(False)
    fig.suptitle(title or "Masks (white = kept, black = zero)")
    return fig


def plot_sparsity_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]] | tuple[Sequence[float], Sequence[float]],
    baseline: float | None = None,
    title: str = "Accuracy vs sparsity",
    percent: bool = True,
) -> Figure:
    """Accuracy (y) against sparsity (x), one line per method: ``{"L1": (sparsities, accs), ...}``.

    Sparsity and accuracy are fractions in [0, 1] (shown as %). ``baseline`` draws the dense
    model's accuracy as a dashed line.
    """
    if isinstance(curves, tuple):
        curves = {"": curves}
    if not curves:
        raise ValueError("plot_sparsity_curve() needs at least one curve.")
    scale = 100.0 if percent else 1.0
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label, (xs, ys) in curves.items():
        xs, ys = _np(xs), _np(ys)
        if xs.shape != ys.shape:
            raise ValueError(f"curve {label!r}: {xs.size} sparsities but {ys.size} accuracies.")
        ax.plot(scale * xs, scale * ys, marker="o", label=label or None)
    if baseline is not None:
        ax.axhline(scale * baseline, ls="--", color="gray", label="dense baseline")
    unit = " (%)" if percent else ""
    ax.set_xlabel("sparsity" + unit)
    ax.set_ylabel("accuracy" + unit)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(curves) or baseline is not None:
        ax.legend()
    return fig


def plot_sensitivity(
    results: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    baseline: float | None = None,
    title: str = "Per-layer pruning sensitivity",
) -> Figure:
    """One small panel per layer: accuracy after pruning only that layer to each sparsity.

    ``results = {"features.0": (sparsities, accuracies), ...}`` (fractions). Flat curves mark
    layers that tolerate pruning; steep ones should be pruned less.
    """
    if not results:
        raise ValueError("plot_sensitivity() needs results for at least one layer.")
    rows, cols = _grid(len(results))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, (name, (xs, ys)) in zip(axes, results.items()):
        xs, ys = _np(xs), _np(ys)
        ax.plot(100 * xs, 100 * ys, marker="o")
        if baseline is not None:
            ax.axhline(100 * baseline, ls="--", color="gray")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(results) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def plot_quantization_error(
    original: torch.Tensor,
    dequantized: torch.Tensor,
    scale: float | None = None,
    bins: int = 80,
    title: str = "Quantization error",
) -> Figure:
    """Left: dequantized vs original values (a staircase); right: histogram of ``x̂ − x``.

    With round-to-nearest and no clipping the error lies in ``[−scale/2, scale/2]``; pass
    ``scale`` to draw those bounds. Clipped values show up as errors beyond them.
    """
    x, xq = _np(original).ravel(), _np(dequantized).ravel()
    if x.shape != xq.shape:
        raise ValueError(f"original has {x.size} values but dequantized has {xq.size}.")
    err = xq - x
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    order = np.argsort(x)
    ax1.plot(x[order], x[order], color="gray", lw=1, label="identity")
    ax1.plot(x[order], xq[order], color="tab:red", lw=1, drawstyle="steps-post", label="dequantized")
    ax1.set_xlabel("original value x")
    ax1.set_ylabel("dequantized x̂")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.hist(err, bins=bins, color="tab:red")
    if scale is not None:
        for b in (-scale / 2, scale / 2):
            ax2.axvline(b, ls="--", color="black")
    rmse = float(np.sqrt(np.mean(err**2))) if err.size else 0.0
    ax2.set_title(f"max |error| = {np.abs(err).max():.3g}, RMSE = {rmse:.3g}", fontsize=9)
    ax2.set_xlabel("error x̂ − x")
    ax2.set_ylabel("count")
    for ax in (ax1, ax2):  # few, short tick labels: they must not overlap when shown small
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    fig.suptitle(title)
    return fig


def plot_tensors(
    tensors: Mapping[str, torch.Tensor],
    title: str = "",
    group: int | None = None,
    max_side: int = 64,
) -> Figure:
    """Heatmaps of small tensors side by side, values on one colour scale, **zero = white**.

    Masks (only 0 and 1) are drawn black = kept / white = pruned. A ≥3-D tensor is shown as
    rows × (the rest flattened). ``group=m`` draws a line every ``m`` columns (the groups of
    N:M sparsity). Only the top-left ``max_side × max_side`` block is drawn (stated in the title).
    """
    if not tensors:
        raise ValueError("plot_tensors() needs at least one tensor.")
    arrays = {}
    for name, t in tensors.items():
        a = _np(t)
        a = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
        arrays[name] = a
    vmax = (
        max(float(np.abs(a).max()) for a in arrays.values() if not _is_mask(a))
        if any(not _is_mask(a) for a in arrays.values())
        else 1.0
    )
    fig = Figure(figsize=(3.0 * len(arrays) + 0.8, 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(arrays)))
    image = None
    for ax, (name, a) in zip(axes, arrays.items()):
        full = a.shape
        a = a[:max_side, :max_side]
        cut = f" (first {a.shape[0]}×{a.shape[1]})" if a.shape != full else ""
        zeros = 100.0 * float((a == 0).mean())
        if _is_mask(a):
            ax.imshow(a, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        else:
            image = ax.imshow(a, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="auto")
        if group:
            for x in np.arange(group, a.shape[1], group) - 0.5:
                ax.axvline(x, color="tab:orange", lw=0.8)
        ax.set_title(f"{name}\n{full[0]}×{full[1]}{cut}, {zeros:.0f}% zero", fontsize=9)
        ax.set_xlabel("input")
        ax.set_ylabel("output")
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="value (0 = white)")
    if title:
        fig.suptitle(title)
    return fig


def _is_mask(a: np.ndarray) -> bool:
    return bool(np.isin(a, (0.0, 1.0)).all())


def plot_bn_folding(
    weight: torch.Tensor,
    folded_weight: torch.Tensor,
    bn_scale: torch.Tensor,
    title: str = "Folding BatchNorm rescales each output filter by γ/σ",
) -> Figure:
    """Left: per-filter L2 norm of the conv weight before and after folding BN into it.
    Right: the measured ratio ‖W'_c‖/‖W_c‖ against BN's ``|γ_c/σ_c|`` (points on the diagonal:
    folding multiplies filter ``c`` by exactly ``γ_c/σ_c``)."""
    w, wf, s = _np(weight), _np(folded_weight), _np(bn_scale).ravel()
    if w.shape != wf.shape or w.shape[0] != s.size:
        raise ValueError(f"shapes {w.shape}, {wf.shape} and {s.size} scales do not match.")
    before = np.linalg.norm(w.reshape(w.shape[0], -1), axis=1)
    after = np.linalg.norm(wf.reshape(wf.shape[0], -1), axis=1)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    c = np.arange(w.shape[0])
    ax1.bar(c - 0.2, before, width=0.4, label="conv weight W")
    ax1.bar(c + 0.2, after, width=0.4, label="folded W' = W·γ/σ")
    ax1.set_xlabel("output channel c")
    ax1.set_ylabel("filter norm ‖W_c‖₂")
    ax1.legend(fontsize=8)
    ratio = after / np.maximum(before, 1e-12)
    ax2.scatter(np.abs(s), ratio, color="tab:green")
    hi = float(max(np.abs(s).max(), ratio.max())) * 1.05
    ax2.plot([0, hi], [0, hi], ls="--", color="gray", label="ratio = |γ/σ|")
    ax2.set_xlabel("BN scale |γ_c / σ_c|")
    ax2.set_ylabel("‖W'_c‖ / ‖W_c‖")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    return fig
