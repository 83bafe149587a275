"""Exercise specs for chapter 11 — compressing a transformer language model.

11.1 ``quantize_int4`` = torchao ``choose_qparams_affine(ASYMMETRIC, (1, g), uint8, 0, 15)`` +
``quantize_affine`` + torchao's ``pack_uint4`` (even column in the low nibble) · 11.2
``dequantize_int4`` = torchao ``dequantize_affine`` of the unpacked codes · 11.3
``wanda_nm_mask``: keep the n highest ``|W_ij|·‖X_j‖₂`` in every group of m consecutive inputs
of a row. 11.4 (``lm_score``) is in ``ch11_perplexity.py``.

torchao quantizes with ``round(w · (1/s))``; code that divides by the scale may land one level
off on a rare entry, which 11.1 tolerates (at most 0.1 % of codes, one level each).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..exercise import Exercise, _describe, assert_same

_GROUPS = (32, 64, 16, 128)


def _ao_qparams(w: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes uint8, scale, zero_point int32) from torchao's primitives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.quantization.quant_primitives import (
            MappingType,
            choose_qparams_affine,
            quantize_affine,
        )

    s, z = choose_qparams_affine(w, MappingType.ASYMMETRIC, (1, g), torch.uint8, 0, 15)
    q = quantize_affine(w, (1, g), s, z, torch.uint8, 0, 15)
    return q, s, z


def _ao_pack(q: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torchao.prototype.mx_formats.kernels import pack_uint4
        except Exception:  # pragma: no cover - the same rule, if torchao moves it
            return q[..., 0::2] | (q[..., 1::2] << 4)
    return pack_uint4(q.to(torch.uint8))


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)


# --- 11.1 quantize_int4 ------------------------------------------------------------------------


def _q_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    group = _GROUPS[seed % len(_GROUPS)]
    rows, cols = 4 + seed % 5, group * (2 + seed % 3)
    w = torch.randn(rows, cols, generator=g) * 0.05 * (1 + seed % 3)
    w[0] = w[0].abs() + 0.01  # a row with only positive weights: the range must still include 0
    w[1, :group] = -w[1, :group].abs() - 0.02  # a group with only negative weights
    return {"w": w, "group_size": group}


def _q_edge_cases() -> list[dict]:
    zeros = _q_case(20)
    zeros["w"][2, : zeros["group_size"]] = 0.0  # an all-zero group: scale = eps, codes = zero point
    const = _q_case(21)
    const["w"][3, -const["group_size"] :] = 0.3  # a constant positive group
    big = {"w": torch.randn(64, 256, generator=torch.Generator().manual_seed(22)) * 0.02, "group_size": 128}
    return [zeros, const, big]


def _q_run(fn, inputs: dict) -> dict:
    res = fn(inputs["w"].clone(), inputs["group_size"])
    if not isinstance(res, (tuple, list)) or len(res) != 3:
        return {"returned": _describe(res)}
    if not all(isinstance(t, torch.Tensor) for t in res):
        return {"returned": ", ".join(_describe(t) for t in res)}
    packed, scale, zp = res
    return {"packed": packed.detach(), "scale": scale.detach(), "zero_point": zp.detach()}


def _q_reference(inputs: dict) -> dict:
    q, s, z = _ao_qparams(inputs["w"], inputs["group_size"])
    return {"packed": _ao_pack(q), "scale": s, "zero_point": z}


def _q_compare(got: dict, expected: dict, inputs: dict) -> None:
    w, group = inputs["w"], inputs["group_size"]
    where = f"(w {tuple(w.shape)}, group_size {group})"
    if "returned" in got:
        raise AssertionError(f"return a tuple (packed, scale, zero_point) of tensors; got {got['returned']}.")
    es, gs = expected["scale"], got["scale"]
    if gs.shape != es.shape:
        raise AssertionError(
            f"scale has shape {tuple(gs.shape)} but should be {tuple(es.shape)} {where}: one scale per row "
            f"and per group of {group} consecutive inputs (reshape w to [rows, cols/{group}, {group}])."
        )
    if not torch.allclose(gs.float(), es, rtol=1e-5, atol=0):
        tips = []
        row0 = w[0].reshape(-1, group)
        if torch.allclose(gs[0].float(), (row0.amax(1) - row0.amin(1)) / 15, rtol=1e-5):
            tips.append("the range must include 0: lo = min(min w, 0), hi = max(max w, 0)")
        tips.append(
            "s = (hi − lo) / 15 for the 16 codes 0..15, at least torch.finfo(torch.float32).smallest_normal"
        )
        bad = (~torch.isclose(gs.float(), es, rtol=1e-5)).nonzero()[0].tolist()
        raise AssertionError(
            f"scale{tuple(bad)} is {gs[tuple(bad)].item():.6g}, torchao gives {es[tuple(bad)].item():.6g} {where}.\n  "
            + "; ".join(tips)
        )
    ez, gz = expected["zero_point"], got["zero_point"]
    if gz.shape != ez.shape or gz.is_floating_point() or not torch.equal(gz.long(), ez.long()):
        raise AssertionError(
            f"zero_point {_describe(gz)} differs from torchao's {_describe(ez)} {where}: "
            "z = clamp(−round(lo / s), 0, 15), an integer tensor (torch.int32)."
        )
    if gz.dtype != torch.int32:
        raise AssertionError(
            f"zero_point values are right but the dtype is {gz.dtype}; torchao returns torch.int32."
        )
    ep, gp = expected["packed"], got["packed"]
    if gp.shape == w.shape:
        raise AssertionError(
            f"packed has shape {tuple(gp.shape)}, one code per entry: pack two 4-bit codes per byte, "
            f"shape {tuple(ep.shape)} (byte j = q[2j] | q[2j+1] << 4)."
        )
    if gp.shape != ep.shape or gp.dtype != torch.uint8:
        raise AssertionError(
            f"packed should be a torch.uint8 tensor of shape {tuple(ep.shape)}, got {_describe(gp)}."
        )
    gq, eq = _unpack(gp).long(), _unpack(ep).long()
    swapped = torch.stack([gp >> 4, gp & 0x0F], dim=-1).flatten(-2).long()
    diff = (gq - eq).abs()
    if int((diff > 1).sum()) or int((diff > 0).sum()) > max(1, eq.numel() // 1000):
        if torch.equal(swapped, eq):
            raise AssertionError(
                "the codes are right but the nibbles are swapped: the even column goes in the low nibble."
            )
        bad = (diff > 0).nonzero()[:3].tolist()
        rows = "\n".join(
            f"    at {tuple(i)}: got {int(gq[tuple(i)])}, expected {int(eq[tuple(i)])}" for i in bad
        )
        raise AssertionError(
            f"{int((diff > 0).sum())} of {eq.numel()} codes differ from torchao's quantize_affine {where}. "
            f"First ones:\n{rows}\n  q = clamp(round(w · (1/s)) + z, 0, 15), with s and z of the entry's own group; "
            "torch.round rounds halves to even."
        )


# --- 11.2 dequantize_int4 ----------------------------------------------------------------------


def _dq_case(seed: int) -> dict:
    case = _q_case(seed)
    q, s, z = _ao_qparams(case["w"], case["group_size"])
    # zero points come as int32 (torchao) or uint8 (how Int4Linear stores them)
    return {
        "packed": _ao_pack(q),
        "scale": s,
        "zero_point": z if seed % 2 else z.to(torch.uint8),
        "group_size": case["group_size"],
    }


def _dq_edge_cases() -> list[dict]:
    out = []
    for case in (_q_edge_cases()[0], _q_edge_cases()[2]):
        q, s, z = _ao_qparams(case["w"], case["group_size"])
        out.append(
            {
                "packed": _ao_pack(q),
                "scale": s,
                "zero_point": z.to(torch.uint8),
                "group_size": case["group_size"],
            }
        )
    return out


def _dq_run(fn, inputs: dict) -> Any:
    return fn(
        inputs["packed"].clone(), inputs["scale"].clone(), inputs["zero_point"].clone(), inputs["group_size"]
    )


def _dq_reference(inputs: dict) -> torch.Tensor:
    from torchao.quantization.quant_primitives import dequantize_affine

    q = _unpack(inputs["packed"])
    g = inputs["group_size"]
    return dequantize_affine(
        q,
        (1, g),
        inputs["scale"],
        inputs["zero_point"].to(torch.int32),
        torch.uint8,
        0,
        15,
        output_dtype=torch.float32,
    )


def _dq_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"return a float32 tensor, got {_describe(got)}.")
    if got.shape != expected.shape:
        raise AssertionError(
            f"shape {tuple(got.shape)} but expected {tuple(expected.shape)}: unpack both nibbles of every byte "
            "(low nibble = even column, high nibble = odd column)."
        )
    if not got.is_floating_point():
        raise AssertionError(f"got a {got.dtype} tensor; ŵ = (q − z)·s is float32.")
    try:
        assert_same(got, expected, inputs, path="dequantize_int4(...)", rtol=1e-5, atol=1e-7)
    except AssertionError as err:
        q = _unpack(inputs["packed"]).float()
        s, z, g = inputs["scale"], inputs["zero_point"].float(), inputs["group_size"]
        tips = []
        tiled = (q - z.repeat(1, g)) * s.repeat(1, g)
        if torch.allclose(got.float(), tiled, atol=1e-7):
            tips.append(
                f"group k covers columns k·{g} … (k+1)·{g}−1: expand the scales with repeat_interleave({g}, dim=1), "
                "not repeat"
            )
        if inputs["zero_point"].dtype == torch.uint8:
            tips.append(
                "zero_point is uint8 here: convert q and z to float *before* subtracting, or uint8 wraps around"
            )
        if torch.allclose(got.float(), q.reshape(*s.shape, g).mul(s[..., None]).reshape(q.shape), atol=1e-7):
            tips.append("subtract the zero point: ŵ = (q − z)·s")
        raise AssertionError(f"{err}\n  " + ("; ".join(tips) or "ŵ = (q − z)·s per group")) from None


# --- 11.3 wanda_nm_mask -------------------------------------------------------------------------


def _w_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, m = [(2, 4), (1, 4), (4, 8), (2, 4)][seed % 4]
    rows, cols = 3 + seed % 4, m * (3 + seed % 3)
    feat_scale = torch.rand(cols, generator=g) * 4 + 0.05  # features of very different size
    shape = (5, cols) if seed % 2 else (2, 3, cols)  # 2-D or [batch, time, features]
    return {
        "weight": torch.randn(rows, cols, generator=g),
        "activations": torch.randn(shape, generator=g) * feat_scale,
        "n": n,
        "m": m,
    }


def _w_edge_cases() -> list[dict]:
    one_token = _w_case(40)
    one_token["activations"] = one_token["activations"].reshape(-1, one_token["activations"].shape[-1])[:1]
    signs = _w_case(41)  # large negative weights and activations: abs() and the norm matter
    signs["weight"] = -signs["weight"].abs() * torch.linspace(0.1, 3, signs["weight"].shape[1])
    signs["activations"] = -signs["activations"].abs()
    dense_m = _w_case(42) | {"n": 3, "m": 4}
    return [one_token, signs, dense_m]


def _w_run(fn, inputs: dict) -> Any:
    return fn(inputs["weight"].clone(), inputs["activations"].clone(), inputs["n"], inputs["m"])


def _w_score(inputs: dict, norm_p: float = 2.0) -> torch.Tensor:
    x = inputs["activations"].reshape(-1, inputs["activations"].shape[-1])
    return inputs["weight"].abs() * torch.linalg.vector_norm(x, ord=norm_p, dim=0)[None, :]


def _w_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    rows, cols = score.shape
    grp = score.reshape(rows, cols // m, m)
    keep = torch.zeros_like(grp, dtype=torch.bool)
    keep.scatter_(-1, grp.topk(n, dim=-1).indices, True)
    return keep.reshape(rows, cols)


def _w_reference(inputs: dict) -> torch.Tensor:
    return _w_mask(_w_score(inputs), inputs["n"], inputs["m"])


def _w_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    n, m = inputs["n"], inputs["m"]
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        raise AssertionError(
            f"return a bool mask shaped like the weight {tuple(expected.shape)}, got {_describe(got)}."
        )
    if got.dtype != torch.bool:
        raise AssertionError(f"the mask is {got.dtype}; return torch.bool (True = keep).")
    if torch.equal(got, expected):
        return
    rows, cols = expected.shape
    kept = got.reshape(rows, cols // m, m).sum(-1)
    tips = []
    if not bool((kept == n).all()):
        tips.append(
            f"every group of {m} consecutive inputs in a row must keep exactly {n} weights "
            f"(found groups keeping {sorted(set(kept.flatten().tolist()))})"
        )
    if torch.equal(got, _w_mask(inputs["weight"].abs(), n, m)):
        tips.append(
            "this is magnitude pruning: Wanda's score is |W_ij| · ‖X_j‖₂, the norm of input feature j"
        )
    if torch.equal(got, _w_mask(_w_score(inputs, 1.0), n, m)):
        tips.append("‖X_j‖₂ is the L2 norm over all tokens, not the L1 norm / mean |x|")
    if torch.equal(got, ~expected) or torch.equal(got, _w_mask(-_w_score(inputs), n, m)):
        tips.append("you kept the lowest scores: keep the n *highest* (True = keep)")
    if rows % m == 0 and torch.equal(got, _w_mask(_w_score(inputs).t().contiguous(), n, m).t()):
        tips.append("groups run along the inputs of one row (consecutive columns), not down a column")
    bad = (got != expected).nonzero()[:3].tolist()
    raise AssertionError(
        f"{int((got != expected).sum())} of {expected.numel()} mask entries differ ({n}:{m}, weight "
        f"{tuple(expected.shape)}, activations {tuple(inputs['activations'].shape)}); first at {bad}.\n  "
        + ("; ".join(tips) or "score = |W| · ‖X_j‖₂ over every token (flatten all but the last dimension)")
    )


EXERCISES = [
    Exercise(
        id="11.1",
        title="quantize_int4(w, group_size)",
        target="quantize_int4",
        points=3,
        make_case=_q_case,
        run=_q_run,
        reference=_q_reference,
        compare=_q_compare,
        edge_cases=_q_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hint="reshape to [rows, cols/g, g]; lo/hi include 0; s=(hi−lo)/15; z=clamp(−round(lo/s),0,15); "
        "q=clamp(round(w·(1/s))+z,0,15); pack q[:, 0::2] | q[:, 1::2] << 4.",
    ),
    Exercise(
        id="11.2",
        title="dequantize_int4(packed, scale, zero_point, group_size)",
        target="dequantize_int4",
        points=2,
        make_case=_dq_case,
        run=_dq_run,
        reference=_dq_reference,
        compare=_dq_compare,
        edge_cases=_dq_edge_cases,
        hint="unpack (low nibble first), convert to float, subtract z and multiply by s expanded with "
        "repeat_interleave(group_size, dim=1).",
    ),
    Exercise(
        id="11.3",
        title="wanda_nm_mask(weight, activations, n, m)",
        target="wanda_nm_mask",
        points=2,
        make_case=_w_case,
        run=_w_run,
        reference=_w_reference,
        compare=_w_compare,
        edge_cases=_w_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hint="score = weight.abs() * activations.reshape(-1, d).norm(dim=0); reshape to [rows, cols/m, m]; "
        "topk(n) → scatter True.",
    ),
]
