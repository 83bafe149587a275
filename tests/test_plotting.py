"""Plotting: every function returns a labelled Figure built without pyplot, showing the right data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as prune
from matplotlib.figure import Figure
from torch import nn

from course_utils import plotting as P
from course_utils.models import CourseCNN


def _visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.fixture
def pruned_cnn() -> CourseCNN:
    torch.manual_seed(0)
    m = CourseCNN()
    prune.l1_unstructured(m.classifier[1], "weight", amount=0.5)
    return m


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plotting function left a pyplot figure open"


def test_weight_histogram_one_panel_per_layer_with_sparsity(pruned_cnn, tmp_path):
    fig = P.plot_weight_histogram(pruned_cnn)
    assert isinstance(fig, Figure)
    axes = _visible_axes(fig)
    titles = [ax.get_title() for ax in axes]
    assert titles == [
        "features.0  (0.0% zeros)",
        "features.4  (0.0% zeros)",
        "classifier.1  (50.0% zeros)",
        "classifier.3  (0.0% zeros)",
    ]
    assert all(ax.get_xlabel() == "weight value" and ax.get_ylabel() == "count" for ax in axes)
    heights = sum(p.get_height() for p in axes[2].patches)
    assert heights == 1024 * 128  # every weight of classifier.1 is in the histogram
    fig.savefig(tmp_path / "hist.png")  # renders headless
    assert (tmp_path / "hist.png").stat().st_size > 0


def test_weight_histogram_excluding_zeros(pruned_cnn):
    fig = P.plot_weight_histogram(pruned_cnn, exclude_zeros=True)
    axes = _visible_axes(fig)
    assert sum(p.get_height() for p in axes[2].patches) == 1024 * 128 // 2
    assert "zeros excluded" in fig._suptitle.get_text()


def test_weight_histogram_of_tensor_and_dict():
    fig = P.plot_weight_histogram({"a": torch.randn(10, 10), "b": torch.zeros(5, 5)}, title="mine")
    assert [ax.get_title() for ax in _visible_axes(fig)] == ["a  (0.0% zeros)", "b  (100.0% zeros)"]
    assert fig._suptitle.get_text() == "mine"
    assert len(_visible_axes(P.plot_weight_histogram(torch.randn(3, 3)))) == 1


def test_mask_heatmap_shows_exactly_the_zeros():
    w = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    fig = P.plot_mask(w)
    ax = _visible_axes(fig)[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), [[0, 1, 1], [1, 0, 0]])
    assert ax.get_title() == "weight  2×3\n50.0% zero"
    assert ax.get_xlabel() == "input" and ax.get_ylabel() == "output"


def test_mask_of_conv_filters_is_rows_and_large_masks_are_block_averaged():
    conv = nn.Conv2d(4, 6, 3)
    prune.ln_structured(conv, "weight", amount=0.5, n=2, dim=0)  # 3 of 6 filters
    ax = _visible_axes(P.plot_mask({"conv": conv.weight}))[0]
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (6, 36) and sorted(img.min(axis=1)) == [0, 0, 0, 1, 1, 1]
    assert ax.get_xlabel() == "input (Cin·k·k)"
    big = torch.ones(10, 600)
    big[:, ::2] = 0
    ax = _visible_axes(P.plot_mask(big, max_side=100))[0]
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (10, 100) and np.allclose(img, 0.5)
    assert "pixel = mean of 1×6" in ax.get_title()


def test_mask_of_model_uses_effective_weights(pruned_cnn):
    axes = _visible_axes(P.plot_mask(pruned_cnn))
    assert len(axes) == 4 and "50.0% zero" in axes[2].get_title()


def test_sparsity_curve_lines_and_baseline():
    fig = P.plot_sparsity_curve(
        {"L1": ([0.0, 0.5, 0.9], [0.98, 0.97, 0.8]), "random": ([0.0, 0.5], [0.98, 0.6])}, baseline=0.986
    )
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["L1", "random", "dense baseline"]
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 50, 90])
    np.testing.assert_allclose(lines[0].get_ydata(), [98, 97, 80])
    assert ax.get_xlabel() == "sparsity (%)" and ax.get_ylabel() == "accuracy (%)"
    assert ax.get_title() == "Accuracy vs sparsity"
    single = P.plot_sparsity_curve(([0.1, 0.2], [0.9, 0.8]), percent=False)
    np.testing.assert_allclose(single.axes[0].get_lines()[0].get_ydata(), [0.9, 0.8])


def test_sparsity_curve_bad_input():
    with pytest.raises(ValueError, match="curve 'x': 3 sparsities but 2 accuracies."):
        P.plot_sparsity_curve({"x": ([0, 0.5, 0.9], [1, 0.9])})
    with pytest.raises(ValueError, match="needs at least one curve"):
        P.plot_sparsity_curve({})


def test_sensitivity_one_panel_per_layer():
    results = {
        "features.0": ([0.0, 0.5], [0.98, 0.9]),
        "features.4": ([0.0, 0.5], [0.98, 0.97]),
        "c": ([0], [1]),
    }
    fig = P.plot_sensitivity(results, baseline=0.98)
    axes = _visible_axes(fig)
    assert [ax.get_title() for ax in axes] == ["features.0", "features.4", "c"]
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), [98, 97])
    assert fig._suptitle.get_text() == "Per-layer pruning sensitivity"
    with pytest.raises(ValueError, match="at least one layer"):
        P.plot_sensitivity({})


def test_quantization_error_panels_and_bounds():
    x = torch.linspace(-1, 1, 201)
    scale = 2 / 255
    xq = torch.fake_quantize_per_tensor_affine(x, scale, 127, 0, 255)  # quantize + dequantize
    fig = P.plot_quantization_error(x, xq, scale=scale)
    left, right = fig.axes
    assert left.get_xlabel() == "original value x" and right.get_xlabel() == "error x̂ − x"
    assert sorted(ln.get_xdata()[0] for ln in right.get_lines()) == pytest.approx([-scale / 2, scale / 2])
    err = (xq - x).abs().max().item()
    assert right.get_title().startswith(f"max |error| = {err:.3g}")
    assert err <= scale / 2 + 1e-6  # round-to-nearest, nothing clipped in this range
    with pytest.raises(ValueError, match="original has 3 values but dequantized has 2."):
        P.plot_quantization_error(torch.zeros(3), torch.zeros(2))


def test_bad_source_type():
    with pytest.raises(TypeError, match="Expected an nn.Module, a Tensor or a dict of Tensors, got str."):
        P.plot_weight_histogram("model")
    with pytest.raises(ValueError, match="ReLU has no Conv/Linear weights to plot."):
        P.plot_mask(nn.ReLU())


def test_plot_tensors_zero_is_white_masks_black_and_groups_drawn() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 16)
    mask = (w.abs() > 0.5).float()
    fig = P.plot_tensors({"w": w, "mask": mask, "w*mask": w * mask}, title="t", group=4)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 3
    img_w, img_mask = axes[0].images[0], axes[1].images[0]
    lo, hi = img_w.get_clim()
    assert lo == -hi and hi == pytest.approx(float(w.abs().max()))  # symmetric: 0 sits mid-scale (white)
    assert img_mask.get_cmap().name == "gray_r" and img_mask.get_clim() == (0, 1)
    assert len(axes[0].lines) == 3  # group lines at columns 4, 8, 12
    assert f"{100 * float((mask == 0).float().mean()):.0f}% zero" in axes[1].get_title()


def test_plot_bn_folding_ratio_equals_bn_scale() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3)
    scale = torch.rand(6) + 0.1
    fig = P.plot_bn_folding(w, w * scale.reshape(-1, 1, 1, 1), scale)
    ax2 = fig.axes[1]
    xy = ax2.collections[0].get_offsets()
    np.testing.assert_allclose(xy[:, 0], xy[:, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        P.plot_bn_folding(w, w, scale[:3])
