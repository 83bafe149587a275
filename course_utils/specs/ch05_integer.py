"""Exercise spec for chapter 5 — what the int8 engine computes.

5.7 ``integer_conv2d``: an integer-only quantized convolution (int32 accumulation, int32 bias,
fixed-point requantization), compared exactly with the integer recipe and within one level with
``torch.ao.nn.quantized.Conv2d`` (fbgemm engine).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from ..exercise import Exercise, assert_same

# --- 5.7 integer_conv2d ------------------------------------------------------------------------

_CONV_CASES = [  # (N, C, H, O, k, stride, padding, per_channel)
    (2, 3, 7, 4, 3, 1, 1, True),
    (1, 8, 9, 6, 3, 2, 0, False),
    (2, 4, 6, 5, 3, 1, 0, True),
    (1, 6, 8, 8, 1, 1, 0, True),
    (2, 5, 8, 3, 3, 2, 1, False),
]


def _conv_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, c, h, o, k, stride, padding, per_channel = _CONV_CASES[seed % len(_CONV_CASES)]
    x_scale = float(torch.rand((), generator=g)) * 0.05 + 0.01
    x_zp = int(torch.randint(20, 90, (), generator=g))
    x_q = torch.randint(0, 128, (n, c, h, h), generator=g, dtype=torch.int64).to(torch.uint8)
    w_scale = torch.rand(o if per_channel else 1, generator=g, dtype=torch.float64) * 0.02 + 0.005
    w_q = torch.randint(-127, 128, (o, c, k, k), generator=g, dtype=torch.int64).to(torch.int8)
    bias = torch.randn(o, generator=g) * 0.5
    # an output scale that fits the real output range into 0..255, as a calibrated observer would
    w_real = w_q.double() * (w_scale.view(-1, 1, 1, 1) if per_channel else w_scale)
    y_real = F.conv2d((x_q.double() - x_zp) * x_scale, w_real, bias.double(), stride, padding)
    lo, hi = min(float(y_real.min()), 0.0), max(float(y_real.max()), 0.0)
    y_scale = (hi - lo) / 255 * (1 + 0.2 * float(torch.rand((), generator=g)))
    y_zp = int(min(255, max(0, round(-lo / y_scale))))
    return {
        "x_q": x_q,
        "x_scale": x_scale,
        "x_zero_point": x_zp,
        "w_q": w_q,
        "w_scale": w_scale if per_channel else float(w_scale),
        "bias": bias,
        "y_scale": y_scale,
        "y_zero_point": y_zp,
        "stride": stride,
        "padding": padding,
    }


def _conv_edges() -> list[dict]:
    base = _conv_case(0)
    sat = dict(base, y_scale=base["y_scale"] / 4)  # outputs clamp at 0 and 255
    zp0 = dict(_conv_case(2), x_zero_point=0)
    return [sat, zp0]


def _conv_run(fn, inputs: dict) -> Any:
    args = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    out = fn(**args)
    if isinstance(out, dict):
        out = {str(k): (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    return out


def _w_scales(inputs: dict) -> torch.Tensor:
    o = inputs["w_q"].shape[0]
    s = inputs["w_scale"]
    return s.double() if isinstance(s, torch.Tensor) else torch.full((o,), float(s), dtype=torch.float64)


def quantize_multiplier(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``m = M0 · 2^−(31 + shift)`` with ``M0 ∈ [2^30, 2^31)`` an int32 and ``shift`` an int (gemmlowp)."""
    mult, shift = [], []
    for v in m.tolist():
        frac, exp = math.frexp(v)  # v = frac · 2^exp, frac ∈ [0.5, 1)
        q = round(frac * 2**31)
        if q == 2**31:
            q, exp = q // 2, exp + 1
        mult.append(q)
        shift.append(-exp)
    return torch.tensor(mult, dtype=torch.int32), torch.tensor(shift, dtype=torch.int32)


def _integer_recipe(inputs: dict) -> dict:
    """The integer-only recipe, exact: int64 conv of (x − zx)·w, int32 bias, fixed-point requantization."""
    x = inputs["x_q"].long() - inputs["x_zero_point"]
    acc = F.conv2d(x, inputs["w_q"].long(), None, inputs["stride"], inputs["padding"])
    s_w = _w_scales(inputs)
    bias_q = torch.round(inputs["bias"].double() / (inputs["x_scale"] * s_w)).to(torch.int32)
    mult, shift = quantize_multiplier(inputs["x_scale"] * s_w / inputs["y_scale"])
    total = acc + bias_q.long().view(1, -1, 1, 1)
    sh = (31 + shift.long()).view(1, -1, 1, 1)
    y = (
        (total * mult.long().view(1, -1, 1, 1) + torch.bitwise_left_shift(torch.ones_like(sh), sh - 1)) >> sh
    ) + inputs["y_zero_point"]
    return {
        "acc": acc.to(torch.int32),
        "bias_q": bias_q,
        "multiplier": mult,
        "shift": shift,
        "y_q": y.clamp(0, 255).to(torch.uint8),
    }


def torch_quantized_conv(inputs: dict) -> torch.Tensor:
    """``torch.ao.nn.quantized.Conv2d`` (fbgemm engine) on the same int8 tensors: its ``int_repr()``."""
    import torch.ao.nn.quantized as nnq

    w_q = inputs["w_q"]
    o, c, k, _ = w_q.shape
    s_w = _w_scales(inputs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = "fbgemm"
        try:
            if isinstance(inputs["w_scale"], torch.Tensor):
                w = torch._make_per_channel_quantized_tensor(w_q, s_w, torch.zeros(o, dtype=torch.int64), 0)
            else:
                w = torch._make_per_tensor_quantized_tensor(w_q, float(inputs["w_scale"]), 0)
            conv = nnq.Conv2d(c, o, k, stride=inputs["stride"], padding=inputs["padding"])
            conv.set_weight_bias(w, inputs["bias"].float())
            conv.scale, conv.zero_point = float(inputs["y_scale"]), int(inputs["y_zero_point"])
            x = torch._make_per_tensor_quantized_tensor(
                inputs["x_q"], float(inputs["x_scale"]), int(inputs["x_zero_point"])
            )
            return conv(x).int_repr()
        finally:
            torch.backends.quantized.engine = previous


def _conv_reference(inputs: dict) -> dict:
    out = _integer_recipe(inputs)
    out["torch y_q"] = torch_quantized_conv(inputs)
    return out


def _first_diff(got: torch.Tensor, exp: torch.Tensor) -> str:
    bad = (got.long() != exp.long()).nonzero()[:3].tolist()
    return "; ".join(f"at {tuple(i)}: got {int(got[tuple(i)])}, expected {int(exp[tuple(i)])}" for i in bad)


def _conv_compare(got: Any, expected: dict, inputs: dict) -> None:
    keys = ["acc", "bias_q", "multiplier", "shift", "y_q"]
    if not isinstance(got, dict) or set(got) != set(keys):
        have = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"return a dict with keys {keys}; got {have}.")
    dtypes = {"acc": torch.int32, "bias_q": torch.int32, "multiplier": torch.int32, "y_q": torch.uint8}
    for key, dtype in dtypes.items():
        g = got[key]
        if not isinstance(g, torch.Tensor) or g.dtype != dtype:
            what = g.dtype if isinstance(g, torch.Tensor) else type(g).__name__
            raise AssertionError(f"{key}: expected a {dtype} tensor, got {what}.")
        if g.shape != expected[key].shape:
            raise AssertionError(f"{key}: shape {tuple(g.shape)} but expected {tuple(expected[key].shape)}.")
    acc, exp_acc = got["acc"], expected["acc"]
    if not torch.equal(acc, exp_acc):
        border = (
            ""
            if inputs["padding"] == 0
            else (
                " With padding, the padded border holds the *real* value 0, which is x_zero_point in "
                "x_q: subtract the zero point first, then pad with 0 (F.conv2d's padding does that)."
            )
        )
        raise AssertionError(
            f"acc: the int32 accumulator Σ (x_q − x_zero_point)·w_q differs ({_first_diff(acc, exp_acc)}).{border}"
        )
    if not torch.equal(got["bias_q"], expected["bias_q"]):
        raise AssertionError(
            f"bias_q: {got['bias_q'].tolist()} but expected {expected['bias_q'].tolist()}: the bias is "
            "quantized with scale x_scale·w_scale (per output channel) and zero point 0: round(bias / (x_scale·w_scale))."
        )
    assert_same(
        {"multiplier": got["multiplier"], "shift": torch.as_tensor(got["shift"]).long()},
        {"multiplier": expected["multiplier"], "shift": expected["shift"].long()},
        path="requantization",
    )
    y, exp_y = got["y_q"], expected["y_q"]
    if not torch.equal(y, exp_y):
        diff = (y.long() - exp_y.long()).abs()
        hint = (
            "round to nearest: add 2^(30 + shift) before the arithmetic right shift by 31 + shift"
            if int(diff.max()) == 1
            else "y = clamp(((acc + bias_q)·M0 + 2^(30+shift)) >> (31 + shift) + y_zero_point, 0, 255) in int64"
        )
        raise AssertionError(
            f"y_q: {int((diff > 0).sum())} of {y.numel()} outputs differ ({_first_diff(y, exp_y)}): {hint}."
        )
    # y_q equals the integer recipe; the engine's float requantization may differ by one level
    off = (y.long() - expected["torch y_q"].long()).abs()
    if int(off.max()) > 1 or int((off > 0).sum()) > max(1, y.numel() // 100):
        raise AssertionError(
            f"y_q differs from torch.ao.nn.quantized.Conv2d by more than rounding: {int((off > 0).sum())} "
            f"of {y.numel()} outputs, up to {int(off.max())} levels."
        )


# --- registry ------------------------------------------------------------------------------------

EXERCISES = [
    Exercise(
        id="5.7",
        title="integer_conv2d: int32 accumulation, int32 bias, fixed-point requantization",
        target="integer_conv2d",
        points=4,
        make_case=_conv_case,
        run=_conv_run,
        reference=_conv_reference,
        compare=_conv_compare,
        edge_cases=_conv_edges,
        public_seeds=(0, 1, 2),
        hint="acc = F.conv2d(x_q.long() - x_zero_point, w_q.long(), None, stride, padding); "
        "bias_q = round(bias / (x_scale·w_scale)); math.frexp(M) gives M0 = round(frac·2^31) and "
        "shift = −exp; y = clamp(((acc + bias_q)·M0 + 2^(30+shift)) >> (31+shift) + y_zero_point, 0, 255).",
    ),
]
