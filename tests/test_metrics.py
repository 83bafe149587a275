"""Metrics: exact sparsity and counts on hand-made tensors, FLOPs vs hand counts, size, latency, compare()."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn
from torch.ao import quantization as tq
from torch.utils.data import DataLoader, TensorDataset

from course_utils import metrics as M


@pytest.fixture(autouse=True)
def _quiet_quantization_deprecations():
    from course_utils.deprecations import filter_known_deprecations

    filter_known_deprecations(verbose=False)


# --- sparsity and counts ------------------------------------------------------------------------


def test_sparsity_of_hand_made_tensors():
    assert M.sparsity(torch.tensor([0.0, 1.0, 0.0, 2.0])) == 0.5
    assert M.sparsity(torch.zeros(3, 4)) == 1.0
    assert M.sparsity(torch.ones(2, 2, 3, 3)) == 0.0
    assert (
        M.sparsity(torch.tensor([[0.0, -0.0, 1e-30], [3.0, 0.0, 5.0]])) == 3 / 6
    )  # -0.0 is zero, 1e-30 is not
    q = torch.quantize_per_tensor(
        torch.tensor([0.0, 0.01, 1.0, -1.0]), scale=0.1, zero_point=0, dtype=torch.qint8
    )
    assert M.sparsity(q) == 0.5  # 0.01 rounds to 0 at scale 0.1


def test_sparsity_bad_input():
    with pytest.raises(ValueError, match=r"sparsity\(\) of an empty tensor is undefined\."):
        M.sparsity(torch.empty(0))
    with pytest.raises(TypeError, match=r"sparsity\(\) takes an nn.Module or a Tensor, got list\."):
        M.sparsity([1, 2])
    with pytest.raises(ValueError, match="model without parameters"):
        M.sparsity(nn.ReLU())


def _hand_model() -> nn.Sequential:
    """Linear(4→3) with 5 of 12 weights zero and 1 of 3 biases zero, plus a BatchNorm (2+2 params, 5 buffers)."""
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[0.0, 1, 2, 0], [3, 0, 4, 5], [0, 6, 0, 7]]))
        m[0].bias.copy_(torch.tensor([0.0, 1, 2]))
        m[1].bias.fill_(0.5)  # BatchNorm's bias starts at 0: make it nonzero so only the zeros above count
    return m


def test_model_counts_parameters_not_buffers():
    m = _hand_model()
    # 12 + 3 linear, 3 + 3 BN affine; running_mean/var/num_batches_tracked are buffers, not counted
    assert M.count_parameters(m) == 21
    assert M.count_nonzero_parameters(m) == 21 - 5 - 1
    assert M.sparsity(m) == pytest.approx(6 / 21, abs=0)
    assert M.layer_sparsity(m) == {"0": 5 / 12}  # 1-D BN weights are not a "layer" weight


def test_pruned_module_reports_effective_sparsity():
    m = _hand_model()
    mask = torch.tensor([[1.0, 1, 0, 1], [1, 1, 1, 0], [1, 1, 1, 1]])  # zeros 2 more nonzero weights
    prune.custom_from_mask(m[0], "weight", mask)
    assert hasattr(m[0], "weight_orig") and hasattr(m[0], "weight_mask")
    assert M.count_parameters(m) == 21  # weight_orig counted once as "weight", the mask (a buffer) not at all
    assert M.count_nonzero_parameters(m) == 21 - 7 - 1
    assert M.layer_sparsity(m) == {"0": 7 / 12}
    names = [n for n, _ in M.effective_parameters(m)]
    assert "0.weight" in names and "0.weight_orig" not in names
    before = M.sparsity(m)
    prune.remove(m[0], "weight")  # make it permanent: the same numbers
    assert M.sparsity(m) == before and M.layer_sparsity(m) == {"0": 7 / 12}


def test_pruned_sparsity_follows_a_mask_changed_after_pruning():
    lin = nn.Linear(10, 10, bias=False)
    prune.identity(lin, "weight")
    lin.weight_mask[:5] = 0  # the cached lin.weight attribute is stale until the next forward
    assert M.sparsity(lin) == 0.5


def test_tied_parameters_are_counted_once():
    a = nn.Linear(4, 4, bias=False)
    b = nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    assert M.count_parameters(nn.Sequential(a, b)) == 16


def _dynamic_int8(model: nn.Module) -> nn.Module:
    return tq.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


def _static_int8(model: nn.Module, example: torch.Tensor) -> nn.Module:
    m = nn.Sequential(tq.QuantStub(), *copy.deepcopy(model), tq.DeQuantStub()).eval()
    m.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(m)
    prepared(example)
    return tq.convert(prepared)


def test_count_parameters_of_eager_quantized_models():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    n = (4 * 2 * 9 + 4) + (64 * 5 + 5)
    assert M.count_parameters(model) == n
    dyn = _dynamic_int8(model)
    assert list(dyn[3].parameters()) == []  # packed params: parameters() sees nothing
    assert M.count_parameters(dyn) == n
    static = _static_int8(model, torch.randn(16, 2, 6, 6))
    assert sum(p.numel() for p in static.parameters()) == 0
    assert M.count_parameters(static) == n
    assert set(M.layer_sparsity(static)) == {"1", "4"}


def test_count_nonzero_of_quantized_weights():
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0, 1, -1], [0.5, 0, 0, 2]]))
        lin.bias.zero_()
    dyn = _dynamic_int8(nn.Sequential(lin))
    assert M.count_nonzero_parameters(dyn) == 4  # zeros stay exactly zero after int8 rounding


# --- size on disk -------------------------------------------------------------------------------


def test_model_size_is_about_four_bytes_per_fp32_parameter():
    m = nn.Linear(500, 400)
    n = M.count_parameters(m)
    size = M.model_size_bytes(m)
    print(f"Linear(500, 400): {n:,} params, {size:,} bytes")
    assert 4 * n < size < 4 * n + 4096  # payload plus a small zip/pickle overhead


def test_int8_models_are_about_four_times_smaller():
    """A model dominated by weights: int8 (1 byte) vs fp32 (4 bytes) → ratio ≈ 4 minus scale/zero-point overhead."""
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512)).eval()
    fp32 = M.model_size_bytes(model)
    dyn = fp32 / M.model_size_bytes(_dynamic_int8(model))
    static = fp32 / M.model_size_bytes(_static_int8(model, torch.randn(64, 512)))
    print(f"fp32 {fp32:,} B; int8 dynamic ×{dyn:.2f}, static ×{static:.2f}")
    assert 3.5 <= dyn <= 4.2
    assert 3.5 <= static <= 4.2


def test_pruned_model_is_larger_on_disk_until_masks_are_removed():
    m = nn.Linear(200, 200)
    dense = M.model_size_bytes(m)
    prune.l1_unstructured(m, "weight", 0.5)
    assert M.model_size_bytes(m) > 1.8 * dense  # weight_orig + weight_mask
    prune.remove(m, "weight")
    assert M.model_size_bytes(m) == pytest.approx(dense, rel=0.01)


# --- FLOPs --------------------------------------------------------------------------------------


def test_flops_of_one_conv_match_hand_count():
    """Conv2d FLOPs = 2 · N · Cout · (Cin/groups) · kh · kw · Hout · Wout (a multiply-add = 2)."""
    n, cin, cout, k, h = 2, 3, 8, 3, 11
    conv = nn.Conv2d(cin, cout, k, stride=2, bias=False)
    hout = (h - k) // 2 + 1  # = 5
    assert M.count_flops(conv, torch.randn(n, cin, h, h)) == 2 * n * cout * cin * k * k * hout * hout
    grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    assert M.count_flops(grouped, torch.randn(1, 4, 6, 6)) == 2 * 1 * 8 * (4 // 2) * 9 * 6 * 6


def test_flops_of_one_linear_match_hand_count():
    """Linear FLOPs = 2 · N · in · out (bias additions are not counted)."""
    lin = nn.Linear(20, 30)
    assert M.count_flops(lin, torch.randn(5, 20)) == 2 * 5 * 20 * 30


def test_flops_of_course_cnn_is_the_sum_of_its_layers():
    from course_utils.models import CourseCNN

    n = 4
    expected = 2 * n * (32 * 1 * 9 * 16 * 16 + 64 * 32 * 9 * 8 * 8 + 1024 * 128 + 128 * 10)
    m = CourseCNN().train()
    assert M.count_flops(m, torch.randn(n, 1, 16, 16)) == expected
    assert m.training  # mode restored


def test_flops_of_quantized_model_is_none_not_a_crash():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert M.count_flops(_dynamic_int8(model), torch.randn(2, 8)) is None
    assert M.count_flops(_static_int8(model, torch.randn(16, 8)), torch.randn(2, 8)) is None


# --- latency ------------------------------------------------------------------------------------


def test_latency_is_positive_median_with_threads_and_batch():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU()).train()
    lat = M.measure_latency(model, torch.randn(8, 64), threads=1, min_run_time=0.05)
    print(lat)
    assert lat.median_ms > 0 and lat.runs > 0 and lat.iqr_ms >= 0
    assert (lat.threads, lat.batch_size) == (1, 8)
    assert str(lat).endswith("ms (batch 8, 1 thread)")
    assert model.training  # mode restored
    two = M.measure_latency(model, torch.randn(3, 64), threads=2, min_run_time=0.05)
    assert two.threads == 2 and str(two).endswith("(batch 3, 2 threads)")


def test_latency_does_not_build_graphs_and_restores_threads():
    before = torch.get_num_threads()
    seen = []
    model = nn.Linear(4, 4)
    model.register_forward_hook(
        lambda mod, i, o: seen.append((torch.is_inference_mode_enabled(), mod.training))
    )
    M.measure_latency(model, torch.randn(2, 4), threads=1, min_run_time=0.01)
    assert seen and all(s == (True, False) for s in seen)  # inference mode, eval mode
    assert torch.get_num_threads() == before


def test_latency_bad_arguments():
    with pytest.raises(ValueError, match=r"threads must be >= 1, got 0\."):
        M.measure_latency(nn.Linear(2, 2), torch.randn(1, 2), threads=0)
    with pytest.raises(ValueError, match=r"min_run_time must be > 0 seconds, got 0\."):
        M.measure_latency(nn.Linear(2, 2), torch.randn(1, 2), min_run_time=0)


# --- compare() ----------------------------------------------------------------------------------


def _identity_classifier(wrong: int = 0) -> nn.Linear:
    """Linear(10→10) = identity on one-hot inputs, except ``wrong`` rows rotated (those classes fail)."""
    lin = nn.Linear(10, 10)
    with torch.no_grad():
        w = torch.eye(10)
        if wrong:
            w[:wrong] = torch.roll(w[:wrong], 1, dims=0)
        lin.weight.copy_(w)
        lin.bias.zero_()
    return lin


def test_compare_on_a_hand_built_case():
    y = torch.arange(10)
    loader = DataLoader(TensorDataset(torch.eye(10)[y], y), batch_size=4)
    models = {
        "right": _identity_classifier(),
        "half": _identity_classifier(wrong=5),
        "big": nn.Linear(10, 10),
    }
    table = M.compare(models, loader, torch.eye(10)[:4], min_run_time=0.02)
    right, half = table["right"], table["half"]
    assert (right.accuracy, half.accuracy) == (1.0, 0.5)
    assert (right.params, right.nonzero) == (110, 10)
    assert right.sparsity == pytest.approx(100 / 110)
    assert right.flops == 2 * 4 * 10 * 10
    assert right.size_ratio == 1.0 and right.speedup == 1.0
    for row in table.rows:
        assert row.size_bytes == M.model_size_bytes(models[row.name])
        assert row.size_ratio == right.size_bytes / row.size_bytes
        assert row.speedup == pytest.approx(right.latency.median_ms / row.latency.median_ms)
        assert row.latency.threads == 1 and row.latency.batch_size == 4
    text = str(table)
    for word in (
        "model",
        "accuracy",
        "params",
        "nonzero",
        "size (KB)",
        "FLOPs",
        "latency",
        "size ×",
        "speedup ×",
    ):
        assert word in text
    assert "100.00%" in text and "50.00%" in text and "ratios vs 'right'" in text
    lines = text.splitlines()
    assert len({len(line) for line in lines[:5]}) == 1  # aligned: header, rule and 3 rows equally wide
    html = table._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 4
    dicts = table.as_dicts()
    assert [d["name"] for d in dicts] == ["right", "half", "big"]
    assert dicts[1]["accuracy"] == 0.5 and dicts[1]["threads"] == 1 and dicts[1]["latency_ms"] > 0


def test_compare_with_named_baseline_and_without_timing():
    a, b = nn.Linear(100, 100), nn.Linear(100, 50)
    table = M.compare({"a": a, "b": b}, None, torch.randn(2, 100), baseline="b", latency=False)
    assert table["b"].size_ratio == 1.0
    assert table["a"].size_ratio == M.model_size_bytes(b) / M.model_size_bytes(a) < 1
    assert table["a"].accuracy is None and table["a"].latency is None and table["a"].speedup is None
    assert "n/a" in str(table)


def test_compare_bad_input():
    with pytest.raises(ValueError, match=r"compare\(\) needs at least one model"):
        M.compare({}, None, torch.randn(1, 2))
    with pytest.raises(ValueError) as err:
        M.compare({"a": nn.Linear(2, 2)}, None, torch.randn(1, 2), baseline="fp32")
    assert str(err.value) == "baseline 'fp32' is not one of the models: a."
    table = M.compare({"a": nn.Linear(2, 2)}, None, torch.randn(1, 2), latency=False)
    with pytest.raises(KeyError, match="No model 'zzz' in the table; have: a."):
        table["zzz"]


class _Mask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_parametrized_mask_counts_the_computed_weight():
    from torch.nn.utils import parametrize

    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    parametrize.register_parametrization(lin, "weight", _Mask(torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 1]])))
    model = nn.Sequential(lin)
    assert M.count_parameters(model) == 8  # `original` is not counted a second time
    assert M.count_nonzero_parameters(model) == 3
    assert M.layer_sparsity(model) == {"0": 5 / 8}
