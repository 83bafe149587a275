"""Exercise specs for chapter 5 — qconfig, observers and post-training quantization.

5.1 ``calc_qparams`` = ``MinMaxObserver(...).calculate_qparams()`` · 5.2 ``quantize`` =
``torch.quantize_per_tensor(...).int_repr()`` · 5.3 ``dequantize`` = ``.dequantize()`` of the
same quantized tensor · 5.4 ``quantize_per_channel`` = ``torch.quantize_per_channel(...)
.int_repr()``. 5.5 (``MyMinMaxObserver``) is in ``ch05_observer.py``,
5.6 (static PTQ of an unseen network) in ``ch05_ptq.py``.

PyTorch quantizes with ``nearbyint(x · (1/scale))`` in float32; code that divides by the scale
may land one level off on about one entry in 10⁵, which the comparison tolerates (at most
0.1 % of entries, one level each). Ties (exact halves) are tested separately.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..exercise import Exercise, assert_same

_DTYPES = (torch.quint8, torch.qint8)
_SCHEMES = (torch.per_tensor_affine, torch.per_tensor_symmetric)


def _quietly(fn, *args, **kwargs):
    """Call ``fn`` without the known quantized-tensor deprecation warnings (message-filtered)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        return fn(*args, **kwargs)


def _int_range(dtype: torch.dtype, reduce_range: bool = False) -> tuple[int, int]:
    lo, hi = (0, 255) if dtype == torch.quint8 else (-128, 127)
    if reduce_range:
        lo, hi = (0, 127) if dtype == torch.quint8 else (-64, 63)
    return lo, hi


def compare_levels(got: Any, expected: torch.Tensor, path: str, what: str) -> None:
    """Integer tensors equal, except ≤ 0.1 % of entries one level off (division vs 1/scale)."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{path}: expected an integer tensor, got {type(got).__name__}.")
    if got.shape != expected.shape:
        raise AssertionError(f"{path}: shape {tuple(got.shape)} but expected {tuple(expected.shape)}.")
    if got.is_floating_point() or got.is_complex():
        raise AssertionError(
            f"{path}: got a {got.dtype} tensor; {what} gives integers ({expected.dtype}). "
            f"Round, clamp, then .to({expected.dtype})."
        )
    diff = (got.long() - expected.long()).abs()
    bad = diff > 0
    if int((diff > 1).sum()) or int(bad.sum()) > max(1, expected.numel() // 1000):
        idx = bad.nonzero()[:3].tolist()
        rows = "\n".join(
            f"    at {tuple(i)}: got {int(got[tuple(i)])}, expected {int(expected[tuple(i)])}" for i in idx
        )
        raise AssertionError(
            f"{path}: {int(bad.sum())} of {expected.numel()} entries differ. First ones:\n{rows}"
        )
    if got.dtype != expected.dtype:
        raise AssertionError(
            f"{path}: values are right but the dtype is {got.dtype}; {what} gives {expected.dtype} "
            f"(the storage type of the quantized dtype)."
        )


# --- 5.1 calc_qparams --------------------------------------------------------------------------


def _qparams_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    lo = float(-torch.rand(1, generator=g) * 4) if seed % 4 else float(torch.rand(1, generator=g))
    hi = float(torch.rand(1, generator=g) * 6 + 0.1) + max(lo, 0.0)
    return {
        "min_val": lo,
        "max_val": hi,
        "dtype": _DTYPES[seed % 2],
        "qscheme": _SCHEMES[(seed // 2) % 2],
        "reduce_range": False,
    }


def _qparams_edge_cases() -> list[dict]:
    out = []
    for dtype in _DTYPES:
        for qscheme in _SCHEMES:
            out += [
                {"min_val": 0.0, "max_val": 0.0, "dtype": dtype, "qscheme": qscheme, "reduce_range": False},
                {"min_val": 2.5, "max_val": 2.5, "dtype": dtype, "qscheme": qscheme, "reduce_range": False},
                {"min_val": -3.0, "max_val": -1.0, "dtype": dtype, "qscheme": qscheme, "reduce_range": False},
            ]
            if not (dtype == torch.quint8 and qscheme == torch.per_tensor_symmetric):  # torch refuses it
                out.append(
                    {
                        "min_val": -1.5,
                        "max_val": 4.25,
                        "dtype": dtype,
                        "qscheme": qscheme,
                        "reduce_range": True,
                    }
                )
    return out


def _qparams_run(fn, inputs: dict) -> dict:
    res = fn(inputs["min_val"], inputs["max_val"], inputs["dtype"], inputs["qscheme"], inputs["reduce_range"])
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        return {"returned": f"{type(res).__name__} {res!r}"[:120]}
    scale, zp = res
    return {"scale": float(scale), "zero_point": int(zp)}


def _qparams_reference(inputs: dict) -> dict:
    obs = _quietly(
        torch.ao.quantization.MinMaxObserver,
        dtype=inputs["dtype"],
        qscheme=inputs["qscheme"],
        reduce_range=inputs["reduce_range"],
    )
    obs(torch.tensor([inputs["min_val"], inputs["max_val"]]))
    scale, zp = obs.calculate_qparams()
    return {"scale": float(scale), "zero_point": int(zp)}


def _describe_qparams(inputs: dict) -> str:
    lo, hi = _int_range(inputs["dtype"], inputs["reduce_range"])
    return (
        f"min_val={inputs['min_val']:.6g}, max_val={inputs['max_val']:.6g}, {inputs['dtype']}, "
        f"{inputs['qscheme']}, reduce_range={inputs['reduce_range']} (integers {lo}..{hi})"
    )


def _qparams_compare(got: Any, expected: dict, inputs: dict) -> None:
    where = _describe_qparams(inputs)
    if set(got) != {"scale", "zero_point"}:
        raise AssertionError(f"return (scale, zero_point); you returned {got.get('returned')}.")
    es, gs = expected["scale"], got["scale"]
    if abs(gs - es) > 1e-6 * abs(es) + 1e-12:
        tips = []
        if inputs["min_val"] > 0 or inputs["max_val"] < 0:
            tips.append("the range must include 0: min_val = min(min_val, 0), max_val = max(max_val, 0)")
        if inputs["min_val"] == inputs["max_val"]:
            tips.append("a zero range still needs a positive scale: at least torch.finfo(torch.float32).eps")
        if inputs["reduce_range"]:
            tips.append("reduce_range halves the integer range (quint8 0..127, qint8 -64..63)")
        if inputs["qscheme"] == torch.per_tensor_symmetric:
            tips.append("symmetric: scale = max(-min_val, max_val) / ((quant_max - quant_min) / 2)")
        else:
            tips.append("affine: scale = (max_val - min_val) / (quant_max - quant_min)")
        raise AssertionError(
            f"scale {gs:.8g} but MinMaxObserver gives {es:.8g} for {where}.\n  " + "; ".join(tips)
        )
    if got["zero_point"] != expected["zero_point"]:
        tip = (
            "symmetric quint8 centres the grid: zero_point = 128; symmetric qint8: 0"
            if inputs["qscheme"] == torch.per_tensor_symmetric
            else "affine: zero_point = quant_min - round(min_val / scale), clamped to the integer range"
        )
        raise AssertionError(
            f"zero_point {got['zero_point']} but MinMaxObserver gives {expected['zero_point']} for {where}.\n  {tip}"
        )


# --- 5.2 quantize / 5.3 dequantize ------------------------------------------------------------------


def _quant_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    dtype = _DTYPES[seed % 2]
    lo, hi = _int_range(dtype)
    scale = float(torch.rand(1, generator=g) * 0.1 + 0.005)
    zp = int(torch.randint(lo, hi + 1, (1,), generator=g))
    x = torch.randn(6, 50, generator=g) * scale * 60  # some values clip at both ends
    return {"x": x, "scale": scale, "zero_point": zp, "dtype": dtype}


def _quant_edge_cases() -> list[dict]:
    ties = torch.arange(-40, 40).float() * 0.25 + 0.125  # exact halves of scale 0.25
    return [
        {"x": torch.zeros(4, 5), "scale": 0.1, "zero_point": 3, "dtype": torch.quint8},
        {"x": ties, "scale": 0.25, "zero_point": 128, "dtype": torch.quint8},
        {"x": ties, "scale": 0.25, "zero_point": 0, "dtype": torch.qint8},
        {"x": -torch.rand(30) * 5 - 0.5, "scale": 0.02, "zero_point": 255, "dtype": torch.quint8},
        {"x": torch.randn(3, 7) * 1e3, "scale": 0.5, "zero_point": -128, "dtype": torch.qint8},
    ]


def _quant_run(fn, inputs: dict) -> Any:
    return fn(inputs["x"].clone(), inputs["scale"], inputs["zero_point"], inputs["dtype"])


def _quant_reference(inputs: dict) -> torch.Tensor:
    q = _quietly(
        torch.quantize_per_tensor, inputs["x"], inputs["scale"], inputs["zero_point"], inputs["dtype"]
    )
    return q.int_repr()


def _quant_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    try:
        compare_levels(got, expected, "quantize(x)", "torch.quantize_per_tensor(...).int_repr()")
    except AssertionError as err:
        lo, hi = _int_range(inputs["dtype"])
        raise AssertionError(
            f"{err}\n  (scale={inputs['scale']:.6g}, zero_point={inputs['zero_point']}, {inputs['dtype']}: "
            f"q = clamp(round(x / scale) + zero_point, {lo}, {hi}); torch.round rounds halves to even)"
        ) from None


def _deq_case(seed: int) -> dict:
    case = _quant_case(seed)
    case["q"] = _quant_reference(case)
    return case


def _deq_edge_cases() -> list[dict]:
    out = []
    for case in _quant_edge_cases():
        case["q"] = _quant_reference(case)
        out.append(case)
    return out


def _deq_run(fn, inputs: dict) -> Any:
    return fn(inputs["q"].clone(), inputs["scale"], inputs["zero_point"])


def _deq_reference(inputs: dict) -> torch.Tensor:
    q = _quietly(
        torch.quantize_per_tensor, inputs["x"], inputs["scale"], inputs["zero_point"], inputs["dtype"]
    )
    return q.dequantize()


def _deq_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    if isinstance(got, torch.Tensor) and not got.is_floating_point():
        raise AssertionError(
            f"dequantize returned a {got.dtype} tensor; x̂ = (q - zero_point) · scale is float32."
        )
    try:
        assert_same(got, expected, inputs, path="dequantize(q)")
    except AssertionError as err:
        raise AssertionError(
            f"{err}\n  q is {inputs['q'].dtype}: convert it to float (or int32) *before* subtracting "
            f"zero_point={inputs['zero_point']}, or uint8 arithmetic wraps around."
        ) from None
    if got.dtype != expected.dtype:
        raise AssertionError(
            f"dequantize returned {got.dtype} values; they are right, but x̂ is float32 "
            f"(as .dequantize() gives {expected.dtype}): compute with q.to(torch.float32)."
        )


# --- 5.4 quantize_per_channel -----------------------------------------------------------------------


def _pc_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    dtype = _DTYPES[(seed + 1) % 2]
    shape, axis = [((8, 3, 3, 3), 0), ((6, 10), 0), ((6, 10), 1), ((4, 5, 2, 2), 1)][seed % 4]
    c = shape[axis]
    lo, hi = _int_range(dtype)
    scales = (torch.rand(c, generator=g, dtype=torch.float64) * 0.05 + 0.002).double()
    zps = torch.randint(lo, hi + 1, (c,), generator=g, dtype=torch.int64)
    x = torch.randn(shape, generator=g) * 2
    return {"x": x, "scales": scales, "zero_points": zps, "axis": axis, "dtype": dtype}


def _pc_edge_cases() -> list[dict]:
    zeros = _pc_case(0)
    zeros["x"] = torch.zeros_like(zeros["x"])
    ties = _pc_case(1)
    ties["scales"] = torch.full_like(ties["scales"], 0.25)
    ties["x"] = (torch.randint(-60, 60, ties["x"].shape).float() + 0.5) * 0.25
    wide = _pc_case(2)
    wide["scales"][0] = 1e-4  # channel 0 clips almost everywhere
    return [zeros, ties, wide]


def _pc_run(fn, inputs: dict) -> Any:
    return fn(
        inputs["x"].clone(),
        inputs["scales"].clone(),
        inputs["zero_points"].clone(),
        inputs["axis"],
        inputs["dtype"],
    )


def _pc_reference(inputs: dict) -> torch.Tensor:
    q = _quietly(
        torch.quantize_per_channel,
        inputs["x"],
        inputs["scales"],
        inputs["zero_points"],
        inputs["axis"],
        inputs["dtype"],
    )
    return q.int_repr()


def _pc_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    try:
        compare_levels(got, expected, "quantize_per_channel(x)", "torch.quantize_per_channel(...).int_repr()")
    except AssertionError as err:
        shape = [1] * inputs["x"].dim()
        shape[inputs["axis"]] = -1
        raise AssertionError(
            f"{err}\n  x has shape {tuple(inputs['x'].shape)} and axis={inputs['axis']}: channel c uses "
            f"scales[c] and zero_points[c]; reshape them to {shape} so they broadcast along axis."
        ) from None


EXERCISES = [
    Exercise(
        id="5.1",
        title="calc_qparams(min_val, max_val, dtype, qscheme)",
        target="calc_qparams",
        points=2,
        make_case=_qparams_case,
        run=_qparams_run,
        reference=_qparams_reference,
        compare=_qparams_compare,
        edge_cases=_qparams_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hint="include 0 in the range; quint8 is 0..255, qint8 -128..127 (halved with reduce_range); "
        "compute in float32 like the observer.",
    ),
    Exercise(
        id="5.2",
        title="quantize(x, scale, zero_point, dtype)",
        target="quantize",
        points=1,
        make_case=_quant_case,
        run=_quant_run,
        reference=_quant_reference,
        compare=_quant_compare,
        edge_cases=_quant_edge_cases,
        hint="torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.uint8 or torch.int8).",
    ),
    Exercise(
        id="5.3",
        title="dequantize(q, scale, zero_point)",
        target="dequantize",
        points=1,
        make_case=_deq_case,
        run=_deq_run,
        reference=_deq_reference,
        compare=_deq_compare,
        edge_cases=_deq_edge_cases,
        hint="(q.float() - zero_point) * scale — convert before subtracting.",
    ),
    Exercise(
        id="5.4",
        title="quantize_per_channel(x, scales, zero_points, axis, dtype)",
        target="quantize_per_channel",
        points=2,
        make_case=_pc_case,
        run=_pc_run,
        reference=_pc_reference,
        compare=_pc_compare,
        edge_cases=_pc_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hint="reshape scales and zero_points to broadcast along `axis`, then quantize as in 5.2.",
    ),
]
