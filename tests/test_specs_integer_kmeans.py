"""Chapter 5 exercises 5.7–5.9 (integer-only conv, k-means weight sharing, centroid fine-tuning):
the reference solutions from the solution notebook pass every case; plausible wrong versions fail
with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from spec_helpers import fails_with, run_all_cases

from course_utils.exercise import get_exercise
from course_utils.notebooks import solution_namespace
from course_utils.specs.ch05_integer import torch_quantized_conv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ch05() -> dict[str, Any]:
    return solution_namespace(ROOT / "solutions" / "05_qconfig_and_ptq.ipynb")


# --- 5.7 integer_conv2d ---------------------------------------------------------------------------


def test_reference_integer_conv_passes_and_matches_the_engine(ch05) -> None:
    assert run_all_cases("5.7", ch05["integer_conv2d"]) >= 3 + 3 + 2
    ex = get_exercise("5.7")
    for inputs in ex.cases(hidden=True):  # the engine agrees to one level on ≤ 1 % of outputs
        ours = ex.run(ch05["integer_conv2d"], inputs)["y_q"].long()
        off = (ours - torch_quantized_conv(inputs).long()).abs()
        assert int(off.max()) <= 1 and int((off > 0).sum()) <= max(1, off.numel() // 100)


def _patched(ch05, **overrides):
    """The reference with one step replaced (a plausible mistake)."""
    ref = ch05["integer_conv2d"]

    def wrong(**kw):
        out = ref(**kw)
        for key, fn in overrides.items():
            out[key] = fn(kw, out)
        return out

    return lambda **kw: wrong(**kw)


def test_padding_with_raw_zeros_fails(ch05) -> None:
    def acc(kw, out):  # pads q_x with 0 instead of z_x: the border is the real value −s·z_x
        p = kw["padding"]
        x = F.pad(kw["x_q"].long(), [p] * 4) - kw["x_zero_point"]
        return F.conv2d(x, kw["w_q"].long(), None, kw["stride"], 0).to(torch.int32)

    fails_with("5.7", _patched(ch05, acc=acc), "acc:", "subtract the zero point first")


def test_truncating_shift_fails(ch05) -> None:
    def y_q(kw, out):
        total = out["acc"].long() + out["bias_q"].long().view(1, -1, 1, 1)
        sh = (31 + out["shift"].long()).view(1, -1, 1, 1)
        y = ((total * out["multiplier"].long().view(1, -1, 1, 1)) >> sh) + kw["y_zero_point"]
        return y.clamp(0, 255).to(torch.uint8)

    fails_with("5.7", _patched(ch05, y_q=y_q), "y_q:", "round to nearest")


def test_bias_in_output_scale_fails(ch05) -> None:
    def bias_q(kw, out):
        return torch.round(kw["bias"] / kw["y_scale"]).to(torch.int32)

    fails_with("5.7", _patched(ch05, bias_q=bias_q), "bias_q:", "x_scale·w_scale")


def test_missing_clamp_fails_on_saturating_outputs(ch05) -> None:
    def y_q(kw, out):
        total = out["acc"].long() + out["bias_q"].long().view(1, -1, 1, 1)
        sh = (31 + out["shift"].long()).view(1, -1, 1, 1)
        half = torch.bitwise_left_shift(torch.ones_like(sh), sh - 1)
        y = ((total * out["multiplier"].long().view(1, -1, 1, 1) + half) >> sh) + kw["y_zero_point"]
        return y.to(torch.uint8)  # wraps around instead of saturating

    fails_with("5.7", _patched(ch05, y_q=y_q), "y_q:")


def test_float_requantization_fails_the_exact_recipe(ch05) -> None:
    def multiplier(kw, out):
        return torch.full_like(out["multiplier"], 2**30)  # "M0 = 0.5", i.e. a made-up multiplier

    fails_with("5.7", _patched(ch05, multiplier=multiplier), "requantization['multiplier']")


# --- 5.8 kmeans_quantize -----------------------------------------------------------------------


def test_reference_kmeans_passes(ch05) -> None:
    assert run_all_cases("5.8", ch05["kmeans_quantize"]) >= 3 + 3 + 1


def test_kmeans_one_round_only_fails(ch05) -> None:
    ref = ch05["kmeans_quantize"]
    fails_with(
        "5.8", lambda w, b, init: ref(w, b, init, max_iter=1), "codebook:", "until no assignment changes"
    )


def test_kmeans_returning_the_init_fails(ch05) -> None:
    def lazy(w, bits, init):
        idx = (w.flatten()[:, None] - init[None, :]).abs().argmin(1)
        return {
            "codebook": init,
            "indices": idx.reshape(w.shape).to(torch.uint8),
            "storage_bits": w.numel() * bits + 32 * 2**bits,
        }

    fails_with("5.8", lazy, "it equals init")


def test_kmeans_int64_indices_and_8_bit_accounting_fail(ch05) -> None:
    ref = ch05["kmeans_quantize"]

    def int64(w, bits, init):
        out = ref(w, bits, init)
        return {**out, "indices": out["indices"].long()}

    def bytes_per_index(w, bits, init):
        return {**ref(w, bits, init), "storage_bits": w.numel() * 8 + 32 * 2**bits}

    fails_with("5.8", int64, "torch.uint8")
    fails_with("5.8", bytes_per_index, "storage_bits", "bits")


# --- 5.9 finetune_centroids ----------------------------------------------------------------------


def test_reference_centroid_step_passes(ch05) -> None:
    assert run_all_cases("5.9", ch05["finetune_centroids"]) >= 3 + 4


def test_centroid_mean_gradient_fails(ch05) -> None:
    def mean_step(codebook, indices, grad_w, lr):
        idx = indices.flatten().long()
        sums = torch.zeros_like(codebook).index_add_(0, idx, grad_w.flatten())
        return codebook - lr * sums / torch.bincount(idx, minlength=len(codebook)).clamp(min=1)

    fails_with("5.9", mean_step, "averaged")


def test_centroid_ascent_and_global_mean_fail(ch05) -> None:
    ref = ch05["finetune_centroids"]
    fails_with("5.9", lambda c, i, g, lr: 2 * c - ref(c, i, g, lr), "codebook after one SGD step")
    fails_with("5.9", lambda c, i, g, lr: c - lr * g.mean(), "codebook after one SGD step")
