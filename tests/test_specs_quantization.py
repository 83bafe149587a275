"""Specs of chapters 4–6: the reference solutions (taken from the solution notebooks, the single
source) pass every public, hidden and edge case; plausible wrong answers fail with a message
that says what to fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.ao.quantization as tq
from spec_helpers import fails_with, run_all_cases
from torch import nn

from course_utils.exercise import assert_same, chapter_exercises, get_exercise
from course_utils.notebooks import solution_namespace

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def solutions() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    for slug in ("04_fusion", "05_qconfig_and_ptq", "06_qat"):
        ns.update(solution_namespace(ROOT / "solutions" / f"{slug}.ipynb"))
    return ns


IDS = [e.id for ch in (4, 5, 6) for e in chapter_exercises(ch)]


def test_exercise_ids_are_consecutive() -> None:
    first = ["4.1", "4.2", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "6.1", "6.2"]
    assert [i for i in IDS if i in first] == first  # the original exercises, in order; new ones join
    assert all(1 <= get_exercise(i).points <= 3 for i in first)


@pytest.mark.parametrize("ex_id", IDS)
def test_reference_solution_passes_every_case(ex_id: str, solutions: dict) -> None:
    ex = get_exercise(ex_id)
    assert ex.edge_cases is not None, f"{ex_id} has no hidden edge cases"
    run_all_cases(ex_id, solutions[ex.target])


@pytest.mark.parametrize("ex_id", IDS)
def test_cases_are_deterministic_and_serializable(ex_id: str, tmp_path: Path) -> None:
    ex = get_exercise(ex_id)
    for seed in ex.public_seeds:
        a, b = ex.make_case(seed), ex.make_case(seed)
        path = tmp_path / f"{seed}.pt"
        torch.save(a, path)
        loaded = torch.load(path, weights_only=True)
        assert_same(loaded, b)


# --- plausible wrong answers -----------------------------------------------------------------


def test_fold_into_next_wrong_answers_fail(solutions: dict) -> None:
    ref = solutions["fold_bn_into_next"]

    def output_channels(bn, layer):  # the lesson's fold (BN after the layer), applied where it is wrong
        folded = copy.deepcopy(layer)
        with torch.no_grad():
            a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            if a.numel() != layer.weight.shape[0]:
                raise RuntimeError("The size of tensor a must match the size of tensor b")
            folded.weight = nn.Parameter(layer.weight * a.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
            folded.bias = nn.Parameter(ref(bn, layer).bias)
        return folded

    ex = get_exercise("4.1")
    square = [c for c in ex.cases(hidden=False) if c.get("c") == c.get("o")]  # public: check() shows the hint
    assert square, "4.1 needs a case with as many outputs as inputs (dim 0 vs dim 1 both broadcast)"
    with pytest.raises(AssertionError, match=r"scaled the layer's \*output\* channels"):
        ex.compare(ex.run(output_channels, square[0]), ex.reference(square[0]), square[0])
    other = [c for c in ex.cases(hidden=False) if c.get("c") != c.get("o")]
    with pytest.raises(RuntimeError):  # elsewhere the shapes do not even broadcast: an error case
        ex.run(output_channels, other[0])

    def adds_shift(bn, layer):  # d added to the bias instead of passed through W
        folded = ref(bn, layer)
        with torch.no_grad():
            a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            d = bn.bias - bn.running_mean * a
            b = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
            folded.bias = nn.Parameter(b + d.sum())
        return folded

    fails_with("4.1", adds_shift, "BN's shift passes through the layer's weights")

    def no_eps(bn, layer):
        folded = ref(bn, layer)
        with torch.no_grad():
            shape = (1, -1) + (1,) * (layer.weight.dim() - 2)
            folded.weight = nn.Parameter(
                layer.weight * (bn.weight / bn.running_var.sqrt()).reshape(shape)
                if bn.affine
                else folded.weight
            )
        return folded

    fails_with("4.1", no_eps, "σ = sqrt(running_var + eps)")

    def in_place(bn, layer):
        folded = ref(bn, layer)
        with torch.no_grad():
            layer.weight.copy_(folded.weight)
        return folded

    fails_with("4.1", in_place, "changed the bn or layer")

    def ignores_padding(bn, layer):  # folds anyway: wrong at the border, and silent
        if isinstance(layer, nn.Conv2d) and layer.padding != (0, 0):
            unpadded = copy.deepcopy(layer)
            unpadded.padding = (0, 0)
            folded = ref(bn, unpadded)
            folded.padding = layer.padding
            return folded
        return ref(bn, layer)

    fails_with("4.1", ignores_padding, "must raise ValueError")


def test_fusable_patterns_wrong_answers_fail(solutions: dict) -> None:
    def pairs_only(model):
        return [g[:2] for g in solutions["fusable_patterns"](model)]

    fails_with("4.2", pairs_only, "missing groups", "longest pattern")

    def course_cnn_hardcoded(model):
        return [["features.0", "features.1", "features.2"], ["classifier.1", "classifier.2"]]

    fails_with("4.2", course_cnn_hardcoded, "unexpected groups")


def test_calc_qparams_wrong_answers_fail(solutions: dict) -> None:
    calc = solutions["calc_qparams"]

    def no_zero(lo, hi, dtype, qscheme, reduce_range=False):  # forgets to include 0 in the range
        qmin, qmax = (0, 255) if dtype == torch.quint8 else (-128, 127)
        if reduce_range:
            qmin, qmax = (0, 127) if dtype == torch.quint8 else (-64, 63)
        if qscheme == torch.per_tensor_symmetric:
            return calc(lo, hi, dtype, qscheme, reduce_range)
        scale = max((hi - lo) / (qmax - qmin), torch.finfo(torch.float32).eps)
        return scale, int(min(max(qmin - round(lo / scale), qmin), qmax))

    fails_with("5.1", no_zero, "include 0")

    def sym_zero_point_zero(lo, hi, dtype, qscheme, reduce_range=False):
        s, z = calc(lo, hi, dtype, qscheme, reduce_range)
        return s, 0 if qscheme == torch.per_tensor_symmetric else z

    fails_with("5.1", sym_zero_point_zero, "zero_point = 128")

    def ignores_reduce_range(lo, hi, dtype, qscheme, reduce_range=False):
        return calc(lo, hi, dtype, qscheme, False)

    fails_with("5.1", ignores_reduce_range, "reduce_range halves")


def test_quantize_dequantize_wrong_answers_fail(solutions: dict) -> None:
    def half_up(x, scale, zp, dtype):  # rounds halves up instead of to even
        qmin, qmax, st = (0, 255, torch.uint8) if dtype == torch.quint8 else (-128, 127, torch.int8)
        return torch.clamp(torch.floor(x / scale + 0.5) + zp, qmin, qmax).to(st)

    fails_with("5.2", half_up, "halves to even")

    def int64(x, scale, zp, dtype):
        return solutions["quantize"](x, scale, zp, dtype).long()

    fails_with("5.2", int64, "dtype is torch.int64")

    def divides(x, scale, zp, dtype):  # x / scale instead of x * (1/scale): must still pass
        qmin, qmax, st = (0, 255, torch.uint8) if dtype == torch.quint8 else (-128, 127, torch.int8)
        return torch.clamp(torch.round(x / scale) + zp, qmin, qmax).to(st)

    run_all_cases("5.2", divides)

    def wraps(q, scale, zp):  # subtracts in uint8
        return (q - zp).float() * scale

    fails_with("5.3", wraps, "*before* subtracting")


def test_per_channel_with_one_scalefails_with(solutions: dict) -> None:
    def first_channel_everywhere(x, scales, zps, axis, dtype):  # per-tensor thinking
        return solutions["quantize"](x, float(scales[0]), int(zps[0]), dtype)

    fails_with("5.4", first_channel_everywhere, "broadcast along axis")


def test_observer_wrong_answers_fail(solutions: dict) -> None:
    good = solutions["MyMinMaxObserver"]

    class LastBatchOnly(good):
        def forward(self, x):
            self.min_val, self.max_val = x.detach().min(), x.detach().max()
            return x

    fails_with("5.5", LastBatchOnly, "over *all* batches")

    class NotAnObserver(nn.Module):
        def __init__(self, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False):
            super().__init__()
            self.inner = good(dtype, qscheme, reduce_range)
            self.min_val, self.max_val = self.inner.min_val, self.inner.max_val

        def forward(self, x):
            self.inner(x)
            self.min_val, self.max_val = self.inner.min_val, self.inner.max_val
            return x

        def calculate_qparams(self):
            return self.inner.calculate_qparams()

    fails_with("5.5", NotAnObserver, "ObserverBase")


def test_fake_quant_wrong_answers_fail(solutions: dict) -> None:
    class NoMask(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, zp, qmin, qmax):
            return solutions["FakeQuantSTE"].forward(ctx, x, scale, zp, qmin, qmax)

        @staticmethod
        def backward(ctx, g):
            return g, None, None, None, None

    fails_with("6.1", NoMask, "should be 0 (x was clamped)")

    class NoClamp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, zp, qmin, qmax):
            return (torch.round(x / scale) + zp - zp) * scale

        @staticmethod
        def backward(ctx, g):
            return g, None, None, None, None

    fails_with("6.1", NoClamp, "forward differs", "clamp(")

    def plain_function(x, scale, zp, qmin, qmax):
        return x

    fails_with("6.1", plain_function, "not a torch.autograd.Function")


def test_qat_loop_wrong_schedules_fail(solutions: dict) -> None:
    good = solutions["qat_train"]

    def off_by_one(model, loader, epochs, fo, fb, lr=1e-3):
        good(model, loader, epochs, None if fo is None else fo + 1, None if fb is None else fb + 1, lr)

    fails_with("6.2", off_by_one, "At the *start* of epoch k")

    def never_freezes(model, loader, epochs, fo, fb, lr=1e-3):
        good(model, loader, epochs, None, None, lr)

    fails_with("6.2", never_freezes, "BN statistics frozen")

    def disables_fake_quant(model, loader, epochs, fo, fb, lr=1e-3):
        model.apply(tq.disable_fake_quant)
        good(model, loader, epochs, fo, fb, lr)

    fails_with("6.2", disables_fake_quant, "fake quantization was switched off")

    def one_step_per_epoch(model, loader, epochs, fo, fb, lr=1e-3):
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for epoch in range(epochs):
            if fb is not None and epoch >= fb:
                model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
            if fo is not None and epoch >= fo:
                model.apply(tq.disable_observer)
            model.train()
            opt.zero_grad()
            for x, y in loader:
                nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    fails_with("6.2", one_step_per_epoch, "on every batch")
