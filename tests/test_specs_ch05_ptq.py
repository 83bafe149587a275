"""Exercise 5.6 (static PTQ of a network the lesson never showed): the solution from its notebook
passes every case, and each stated requirement broken on its own loses credit with a message
that names it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.ao.quantization as tq
from spec_helpers import fails_with, run_all_cases
from torch import nn

from course_utils import quantization
from course_utils.exercise import get_exercise
from course_utils.notebooks import solution_namespace

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")

ALL = [
    (nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv2d, nn.ReLU),
    (nn.BatchNorm2d, nn.ReLU),
    (nn.Linear, nn.ReLU),
    (nn.Linear, nn.BatchNorm1d),
]


@pytest.fixture(scope="module")
def solution() -> Any:
    return solution_namespace(ROOT / "solutions" / "05_qconfig_and_ptq.ipynb")["quantize_static"]


def _groups(model: nn.Module, patterns: list[tuple]) -> list[list[str]]:
    out = []
    for prefix, seq in model.named_modules():
        if isinstance(seq, nn.Sequential):
            kids, i = list(seq.named_children()), 0
            while i < len(kids):
                for pat in patterns:
                    win = kids[i : i + len(pat)]
                    if len(win) == len(pat) and all(type(m) is t for (_, m), t in zip(win, pat)):
                        out.append([f"{prefix}.{n}" if prefix else n for n, _ in win])
                        i += len(pat)
                        break
                else:
                    i += 1
    return out


def ptq(
    patterns: list[tuple] = ALL,
    wrap: str = "auto",
    batches: int | None = None,
    qconfig_engine: str | None = None,
    set_engine: bool = True,
    copy_model: bool = True,
    groups: list[list[str]] | None = None,
    convert: bool = True,
):
    """A static-PTQ function that is right except where an argument says otherwise."""

    def quantize_static(model: nn.Module, calib_loader: Any, backend: str | None = None) -> nn.Module:
        engine = quantization.use_engine(backend) if set_engine else (backend or "x86")
        m = copy.deepcopy(model).eval() if copy_model else model.eval()
        if wrap == "always" or (wrap == "auto" and not quantization.has_quant_stubs(m)):
            m = tq.QuantWrapper(m).eval()
        found = groups if groups is not None else _groups(m, patterns)
        if found:
            tq.fuse_modules(m, found, inplace=True)
        m.qconfig = tq.get_default_qconfig(qconfig_engine or engine)
        tq.prepare(m, inplace=True)
        with torch.no_grad():
            for i, (x, _) in enumerate(calib_loader):
                if batches is not None and i >= batches:
                    break
                m(x)
        return tq.convert(m, inplace=True) if convert else m

    return quantize_static


def test_the_solution_passes_every_case(solution: Any) -> None:
    """Full marks (the blank exercise scoring 0: test_grading_chapters, test_spec_requirements)."""
    assert run_all_cases("5.6", solution) >= 12


def test_the_cases_cover_what_the_text_states() -> None:
    """Networks with and without stubs, both engines, every fusion pattern, nothing to fuse."""
    ex = get_exercise("5.6")
    cases = ex.cases(hidden=True)
    kinds = {(c["kind"], c["backend"]) for c in cases}
    assert {"random", "random_stubs", "course_cnn", "course_cnn_stubs", "mlp", "lenet5"} <= {
        k for k, _ in kinds
    }
    assert {None, "qnnpack"} <= {b for _, b in kinds}
    layers: set[str] = set()
    for c in cases:
        layers |= set(ex.reference(c)["layers"])
    for fused in ("ConvReLU2d", "Conv2d", "BNReLU2d", "LinearReLU", "BatchNorm2d"):
        assert f"int8 {fused}" in layers, fused


# --- one wrong implementation per stated requirement --------------------------------------------------


def test_fusing_only_conv_bn_relu_triples_fails() -> None:
    """ "every Conv-BN-ReLU, Conv-BN, Conv-ReLU, BN-ReLU, Linear-ReLU and Linear-BN1d run"."""
    fails_with("5.6", ptq(patterns=ALL[:1]), "not made of the layers full fusion gives", "Hint:")


def test_fusing_without_batchnorm_fails() -> None:
    no_bn = [p for p in ALL if nn.BatchNorm2d not in p and nn.BatchNorm1d not in p]
    msg = fails_with("5.6", ptq(patterns=no_bn), "not made of the layers full fusion gives")
    assert "BatchNorm was left as its own layer" in msg


def test_not_quantizing_the_input_fails() -> None:
    """ "quantize the input even if the model has no QuantStub"."""
    fails_with("5.6", ptq(wrap="never"), "nothing quantizes the input", "QuantWrapper")


def test_wrapping_a_model_that_has_stubs_fails() -> None:
    fails_with("5.6", ptq(wrap="always"), "already has QuantStub/DeQuantStub")


def test_calibrating_on_one_batch_fails() -> None:
    """ "calibrated on every batch of calib_loader"."""
    fails_with("5.6", ptq(batches=1), "calibrated on the first batch only", "every batch")


def test_changing_the_given_model_fails() -> None:
    """ "the original untouched"."""
    fails_with("5.6", ptq(copy_model=False), "the model you were given was changed", "copy.deepcopy(model)")


def test_course_cnn_groups_hard_coded_fail() -> None:
    """ "find the fusion groups yourself": CourseCNN's names, whatever the network."""
    fails_with(
        "5.6", ptq(groups=quantization.COURSE_CNN_FUSION_GROUPS), "find the fusion groups in *this* network"
    )


def test_the_x86_qconfig_hard_coded_fails() -> None:
    """ "the default qconfig of the engine use_engine(backend) sets" (not "x86")."""
    fails_with("5.6", ptq(qconfig_engine="x86"), "x86 default qconfig on another engine")


def test_not_setting_the_engine_fails() -> None:
    fails_with("5.6", ptq(set_engine=False), "quantized engine is", "use_engine(backend)")


def test_not_converting_fails() -> None:
    fails_with("5.6", ptq(convert=False), "still float", "convert after calibrating")


def _own_fold(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """Exercise 4.1's fold, in its own float order (not fuse_conv_bn_eval's)."""
    f = copy.deepcopy(layer)
    with torch.no_grad():
        factor = bn.weight / (bn.running_var + bn.eps).sqrt()
        b = layer.bias if layer.bias is not None else torch.zeros_like(factor)
        f.weight = nn.Parameter(layer.weight * factor.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
        f.bias = nn.Parameter((b - bn.running_mean) * factor + bn.bias)
    return f


def test_folding_bn_by_hand_passes_within_the_stated_step() -> None:
    """The tolerance the text justifies: a fold in another float order still gets full marks."""

    def by_hand(model: nn.Module, calib_loader: Any, backend: str | None = None) -> nn.Module:
        engine = quantization.use_engine(backend)
        m = copy.deepcopy(model).eval()
        if not quantization.has_quant_stubs(m):
            m = tq.QuantWrapper(m).eval()
        rest = []
        for group in _groups(m, ALL):
            mods = [m.get_submodule(n) for n in group]
            if isinstance(mods[0], (nn.Conv2d, nn.Linear)) and isinstance(
                mods[1], nn.modules.batchnorm._BatchNorm
            ):
                for name, new in ((group[0], _own_fold(mods[0], mods[1])), (group[1], nn.Identity())):
                    parent, _, leaf = name.rpartition(".")
                    setattr(m.get_submodule(parent), leaf, new)
                if len(group) == 3:
                    rest.append([group[0], group[2]])
            else:
                rest.append(group)
        if rest:
            tq.fuse_modules(m, rest, inplace=True)
        m.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(m, inplace=True)
        with torch.no_grad():
            for x, _ in calib_loader:
                m(x)
        return tq.convert(m, inplace=True)

    run_all_cases("5.6", by_hand)
