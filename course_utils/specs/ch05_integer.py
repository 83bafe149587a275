"""Exercise specs for chapter 5 — what the int8 engine computes, and k-means weight sharing.

5.7 ``integer_conv2d``: an integer-only quantized convolution (int32 accumulation, int32 bias,
fixed-point requantization), compared exactly with the integer recipe and within one level with
``torch.ao.nn.quantized.Conv2d`` (fbgemm engine). 5.8 ``kmeans_quantize``: a 2^b-centroid
codebook per layer, compared with scikit-learn's ``KMeans`` from the same initial centroids.
5.9 ``centroid_gradient``: the per-cluster aggregated gradient of Deep Compression, compared with
autograd through ``codebook[indices]``.
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


# --- 5.8 kmeans_quantize ------------------------------------------------------------------------

_KM_CASES = [(2, (600,)), (3, (16, 3, 3, 3)), (4, (40, 50)), (3, (1000,)), (2, (8, 8, 3, 3))]


def _km_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    bits, shape = _KM_CASES[seed % len(_KM_CASES)]
    u = torch.rand(shape, generator=g, dtype=torch.float64) * 0.998 + 0.001
    w = (
        torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs()) * -0.05
    ).float()  # Laplace, like trained weights
    k = 2**bits
    init = torch.quantile(w.flatten().double(), torch.linspace(0.02, 0.98, k, dtype=torch.float64)).float()
    return {"w": w, "bits": bits, "init": init}


def _km_edges() -> list[dict]:
    w = torch.tensor([0.5, -0.5, 0.1, 0.1, 0.1, -0.2, 0.3, 0.3, -0.4, 0.02])  # repeated values, no ties
    return [{"w": w, "bits": 2, "init": torch.tensor([-0.45, -0.1, 0.1, 0.4])}]


def _km_run(fn, inputs: dict) -> Any:
    out = fn(inputs["w"].clone(), inputs["bits"], inputs["init"].clone())
    if isinstance(out, dict):
        out = {str(k): (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    return out


def _lloyd_sklearn(w: torch.Tensor, init: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.cluster import KMeans

    data = w.detach().double().reshape(-1, 1).numpy()
    km = KMeans(len(init), init=init.double().reshape(-1, 1).numpy(), n_init=1, max_iter=300, tol=0.0)
    km.fit(data)
    return torch.from_numpy(km.cluster_centers_[:, 0]).float(), torch.from_numpy(km.labels_).long()


def _km_reference(inputs: dict) -> dict:
    w, bits = inputs["w"], inputs["bits"]
    codebook, labels = _lloyd_sklearn(w, inputs["init"])
    return {
        "codebook": codebook,
        "indices": labels.reshape(w.shape).to(torch.uint8),
        "storage_bits": w.numel() * bits + 32 * 2**bits,
    }


def _km_compare(got: Any, expected: dict, inputs: dict) -> None:
    keys = ["codebook", "indices", "storage_bits"]
    if not isinstance(got, dict) or set(got) != set(keys):
        have = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"return a dict with keys {keys}; got {have}.")
    w, bits = inputs["w"], inputs["bits"]
    k = 2**bits
    cb, idx = got["codebook"], got["indices"]
    if not isinstance(cb, torch.Tensor) or tuple(cb.shape) != (k,):
        raise AssertionError(f"codebook: expected {k} = 2^{bits} centroids (a tensor of shape ({k},)).")
    if not isinstance(idx, torch.Tensor) or idx.shape != w.shape or idx.is_floating_point():
        raise AssertionError(f"indices: expected an integer tensor of w's shape {tuple(w.shape)}.")
    if idx.dtype != torch.uint8:
        raise AssertionError(f"indices: store them as torch.uint8 (at most 8 bits each), got {idx.dtype}.")
    n_bits = expected["storage_bits"]
    if got["storage_bits"] != n_bits:
        raise AssertionError(
            f"storage_bits: got {got['storage_bits']!r}, expected {n_bits} = {w.numel()} indices × {bits} bits "
            f"+ {k} fp32 centroids × 32 bits."
        )
    exp_cb = expected["codebook"]
    if not torch.allclose(cb.float(), exp_cb, rtol=1e-4, atol=1e-6):
        moved = (
            ""
            if not torch.allclose(cb.float(), inputs["init"])
            else " (it equals init: no Lloyd iteration ran)"
        )
        raise AssertionError(
            f"codebook: {[round(v, 5) for v in cb.tolist()]} but KMeans from the same init converges to "
            f"{[round(v, 5) for v in exp_cb.tolist()]}{moved}. Alternate assignment (nearest centroid) and "
            "update (mean of its weights) until no assignment changes."
        )
    flat, gi, ei = w.flatten(), idx.flatten().long(), expected["indices"].flatten().long()
    differ = gi != ei
    if bool(differ.any()):
        d_got = (flat[differ] - exp_cb[gi[differ].clamp(0, k - 1)]).abs()
        d_exp = (flat[differ] - exp_cb[ei[differ]]).abs()
        if not bool(torch.allclose(d_got, d_exp, atol=1e-6)):
            i = int(differ.nonzero()[0])
            raise AssertionError(
                f"indices: weight {flat[i].item():.5f} (flat index {i}) is assigned to centroid {int(gi[i])} "
                f"but its nearest centroid is {int(ei[i])} ({exp_cb[ei[i]].item():.5f})."
            )


# --- 5.9 finetune_centroids ----------------------------------------------------------------------


def _ft_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    k = 2 ** (2 + seed % 3)
    shape = [(6, 5), (4, 3, 3, 3), (50,)][seed % 3]
    indices = torch.randint(0, k, shape, generator=g).to(torch.uint8)
    indices.view(-1)[0] = k - 1
    if seed % 2:
        indices[indices == 1] = 2  # centroid 1 shares no weight: its gradient is 0
    return {
        "codebook": torch.linspace(-0.3, 0.3, k),
        "indices": indices,
        "grad_w": torch.randn(shape, generator=g),
        "lr": [0.1, 0.01, 0.5][seed % 3],
    }


def _ft_run(fn, inputs: dict) -> Any:
    out = fn(inputs["codebook"].clone(), inputs["indices"].clone(), inputs["grad_w"].clone(), inputs["lr"])
    return out.detach() if isinstance(out, torch.Tensor) else out


def _ft_reference(inputs: dict) -> torch.Tensor:
    codebook = inputs["codebook"].clone().requires_grad_(True)
    opt = torch.optim.SGD([codebook], lr=inputs["lr"])
    w = codebook[inputs["indices"].long()]  # every weight is a copy of its centroid
    (w * inputs["grad_w"]).sum().backward()  # dL/dw = grad_w, so dL/dc_k = Σ_{i in cluster k} grad_w[i]
    opt.step()
    return codebook.detach()


def _ft_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    if (
        isinstance(got, torch.Tensor)
        and got.shape == expected.shape
        and not torch.allclose(got, expected, atol=1e-5)
    ):
        idx, grad, k = inputs["indices"].flatten().long(), inputs["grad_w"].flatten(), expected.numel()
        counts = torch.bincount(idx, minlength=k).clamp(min=1)
        mean_step = inputs["codebook"] - inputs["lr"] * torch.zeros(k).index_add_(0, idx, grad) / counts
        if torch.allclose(got, mean_step, atol=1e-5):
            raise AssertionError(
                "you averaged the gradients of each cluster; Deep Compression *sums* them "
                "(the centroid is shared by every weight of its cluster, so each contributes its gradient)."
            )
    assert_same(got, expected, inputs, path="codebook after one SGD step", atol=1e-5, rtol=1e-5)


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
    Exercise(
        id="5.8",
        title="kmeans_quantize(w, bits, init): 2^b shared weights",
        target="kmeans_quantize",
        points=3,
        make_case=_km_case,
        run=_km_run,
        reference=_km_reference,
        compare=_km_compare,
        edge_cases=_km_edges,
        public_seeds=(0, 1, 2),
        hint="repeat: idx = (w.reshape(-1, 1) - codebook).abs().argmin(1); new centroid k = mean of "
        "w[idx == k] (keep it if the cluster is empty); stop when idx stops changing.",
    ),
    Exercise(
        id="5.9",
        title="finetune_centroids(codebook, indices, grad_w, lr)",
        target="finetune_centroids",
        points=2,
        make_case=_ft_case,
        run=_ft_run,
        reference=_ft_reference,
        compare=_ft_compare,
        public_seeds=(0, 1, 2),
        hidden_seeds=(3, 4, 1000, 1001),
        hint="grad_c = torch.zeros_like(codebook).index_add_(0, indices.flatten().long(), grad_w.flatten()); "
        "return codebook - lr * grad_c.",
    ),
]
