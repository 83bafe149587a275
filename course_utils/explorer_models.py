"""The model surgery behind the explorers (pure functions, tested without widgets): which layers
can be pruned, a pruned copy of a model, and weights fake-quantized on a b-bit grid,
``ŵ = (clamp(round(w/s) + z, q_min, q_max) − z)·s`` per tensor or per output channel."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = [
    "ALL_LAYERS",
    "PRUNING_METHODS",
    "QUANT_SCHEMES",
    "ExplorerError",
    "prunable_layers",
    "prune_copy",
    "quant_params",
    "fake_quantize",
    "fake_quantize_copy",
]

PRUNING_METHODS: tuple[str, ...] = (
    "L1 unstructured",
    "Ln structured (L2, rows/channels)",
    "random unstructured",
)
QUANT_SCHEMES: tuple[str, ...] = (
    "affine per-tensor",
    "symmetric per-tensor",
    "affine per-channel",
    "symmetric per-channel",
)
ALL_LAYERS = "all prunable layers"


class ExplorerError(ValueError):
    """Bad arguments to an explorer; the message says what to pass instead."""


def prunable_layers(model: nn.Module, skip_output_layer: bool = True) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every Conv/Linear with a ``weight``; the last one (the output layer,
    whose rows are the classes) is skipped when ``skip_output_layer``."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    if skip_output_layer and len(layers) > 1:
        layers = layers[:-1]
    return layers


def prune_copy(
    model: nn.Module,
    amount: float,
    method: str = PRUNING_METHODS[0],
    seed: int = 0,
    layers: Iterable[str] | None = None,
    skip_output_layer: bool = True,
) -> nn.Module:
    """A pruned deep copy of ``model`` (the original is untouched); masks stay attached.

    Each layer in ``layers`` (default: every prunable layer) loses the fraction ``amount`` of its
    weights (unstructured: smallest ``|w|`` or random) or of its output rows/channels ranked by
    L2 norm (structured, ``dim=0``), layer by layer.
    """
    if not 0.0 <= amount <= 1.0:
        raise ExplorerError(f"amount must be a fraction in [0, 1], got {amount}.")
    if method not in PRUNING_METHODS:
        raise ExplorerError(
            f"Unknown pruning method {method!r}. Choose one of: {', '.join(PRUNING_METHODS)}."
        )
    pruned = copy.deepcopy(model).eval()
    available = dict(prunable_layers(pruned, skip_output_layer))
    names = list(available) if layers is None else list(layers)
    missing = [n for n in names if n not in available]
    if missing:
        raise ExplorerError(f"No prunable layer {missing}. Choose from: {', '.join(available)}.")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # random pruning is reproducible, and leaves the global RNG as it was
    try:
        for name in names:
            module = available[name]
            if method == PRUNING_METHODS[0]:
                prune.l1_unstructured(module, "weight", amount=amount)
            elif method == PRUNING_METHODS[1]:
                prune.ln_structured(module, "weight", amount=amount, n=2, dim=0)
            else:
                prune.random_unstructured(module, "weight", amount=amount)
    finally:
        torch.random.set_rng_state(gen_state)
    return pruned


def quant_params(
    w: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, axis: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Min/max scale and zero point as PyTorch's ``MinMaxObserver`` computes them.

    Range includes 0: ``lo = min(w.min(), 0)``, ``hi = max(w.max(), 0)``. Affine: ``q ∈ [0, 2^b−1]``,
    ``s = (hi − lo)/(q_max − q_min)``, ``z = q_min − round(lo/s)``. Symmetric: ``q ∈ [−2^(b−1), 2^(b−1)−1]``,
    ``s = max(−lo, hi)/((q_max − q_min)/2)``, ``z = 0``. Returns ``(scale, zero_point, q_min, q_max)``.
    """
    if not 2 <= bits <= 16:
        raise ExplorerError(f"bits must be between 2 and 16, got {bits}.")
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    w = w.detach().float()
    if per_channel and w.dim() > 0:
        flat = w.movedim(axis, 0).reshape(w.shape[axis], -1)
        lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    else:
        lo, hi = w.min().reshape(1), w.max().reshape(1)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    eps = torch.finfo(torch.float32).eps
    if symmetric:
        scale = torch.clamp(torch.maximum(-lo, hi) / ((qmax - qmin) / 2), min=eps)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = torch.clamp((hi - lo) / (qmax - qmin), min=eps)
        zero_point = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int32)
    return scale, zero_point, qmin, qmax


def fake_quantize(w: torch.Tensor, bits: int, scheme: str = QUANT_SCHEMES[0], axis: int = 0) -> torch.Tensor:
    """Quantize-dequantize ``w`` with the min/max ``scheme`` (one of ``QUANT_SCHEMES``) at ``bits``."""
    if scheme not in QUANT_SCHEMES:
        raise ExplorerError(f"Unknown scheme {scheme!r}. Choose one of: {', '.join(QUANT_SCHEMES)}.")
    symmetric, per_channel = scheme.startswith("symmetric"), scheme.endswith("per-channel")
    w = w.detach().float()
    per_channel = per_channel and w.dim() > 0
    scale, zp, qmin, qmax = quant_params(w, bits, symmetric, per_channel, axis)
    if per_channel:
        return torch.fake_quantize_per_channel_affine(w, scale, zp, axis, qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zp), qmin, qmax)


def fake_quantize_copy(model: nn.Module, bits: int, scheme: str = QUANT_SCHEMES[0]) -> nn.Module:
    """A deep copy of ``model`` whose Conv/Linear weights are fake-quantized (activations stay fp32)."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for _, module in prunable_layers(out, skip_output_layer=False):
            module.weight.copy_(fake_quantize(module.weight, bits, scheme))
    return out
