"""Compressing the Linear layers of a transformer: group-wise int4, Wanda and N:M pruning.

**Group-wise int4** (asymmetric, as torchao's ``choose_qparams_affine(ASYMMETRIC, block_size=(1, g),
uint4 0..15)``): for each row and each group of ``g`` consecutive inputs, with
``lo = min(min w, 0)``, ``hi = max(max w, 0)``:
``s = max((hi − lo) / 15, eps)``, ``z = clamp(−round(lo / s), 0, 15)``,
``q = clamp(round(w · (1/s)) + z, 0, 15)``, ``ŵ = (q − z) · s``. Two codes share a byte:
``byte = q[2j] | q[2j+1] << 4`` (even column in the low nibble).

**Wanda** (Sun et al., 2023): score ``S_ij = |W_ij| · ‖X_j‖₂`` where ``‖X_j‖₂`` is the norm of
input feature ``j`` over calibration tokens; weights are compared **within each output row**.
**N:M**: in every group of ``m`` consecutive inputs of a row keep the ``n`` highest scores.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

__all__ = [
    "quantize_int4",
    "dequantize_int4",
    "pack_int4",
    "unpack_int4",
    "Int4Linear",
    "int4_weight_only",
    "block_linears",
    "input_norms",
    "wanda_score",
    "nm_mask",
    "row_unstructured_mask",
    "prune_linears",
    "semi_structured_status",
]

_EPS = torch.finfo(torch.float32).smallest_normal  # torchao's default eps for float32 weights


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """``[..., 2k]`` codes in 0..15 → ``[..., k]`` uint8: even column low nibble, odd column high."""
    if q.shape[-1] % 2:
        raise ValueError(f"the last dimension must be even to pack pairs, got {q.shape[-1]}.")
    q = q.to(torch.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: ``[..., k]`` uint8 → ``[..., 2k]`` uint8 codes 0..15."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric uint4 per (row, group): ``(packed uint8 [out, in/2], scale [out, in/g], zero_point
    int32 [out, in/g])`` — the numbers of torchao's ``choose_qparams_affine`` / ``quantize_affine``."""
    out_f, in_f = w.shape
    if in_f % group_size:
        raise ValueError(f"in_features {in_f} is not a multiple of group_size {group_size}.")
    g = w.detach().float().reshape(out_f, in_f // group_size, group_size)
    lo = g.amin(-1).clamp(max=0)
    hi = g.amax(-1).clamp(min=0)
    scale = ((hi - lo) / 15).clamp(min=_EPS)
    zp = torch.clamp(-torch.round(lo / scale), 0, 15)
    q = torch.clamp(torch.round(g * (1.0 / scale[..., None])) + zp[..., None], 0, 15)
    return pack_int4(q.reshape(out_f, in_f)), scale, zp.to(torch.int32)


def dequantize_int4(
    packed: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int
) -> torch.Tensor:
    """``ŵ = (q − z) · s`` per group, float32 ``[out, in]``."""
    q = unpack_int4(packed).float()
    out_f, in_f = q.shape
    g = q.reshape(out_f, in_f // group_size, group_size)
    return ((g - zero_point[..., None].float()) * scale[..., None]).reshape(out_f, in_f)


class Int4Linear(nn.Module):
    """A Linear whose weight is stored as packed int4 codes + per-group scale and zero point.

    ``kernel="reference"`` dequantizes and calls ``F.linear`` (any CPU); ``kernel="aten"`` calls
    PyTorch's CPU int4 kernel ``torch._weight_int4pack_mm_for_cpu`` (the tinygemm layout:
    ``ŵ = (q − 8)·s + zero`` with ``zero = (8 − z)·s``, the same numbers as the reference) for
    inputs of at most ``aten_max_rows`` rows (decode), and dequantizes for larger ones (prefill),
    as weight-only inference engines do: the int4 kernel is built for matrix–vector products.
    """

    aten_max_rows = 16

    def __init__(self, linear: nn.Linear, group_size: int, kernel: str = "reference") -> None:
        super().__init__()
        if kernel not in ("reference", "aten"):
            raise ValueError(f"kernel must be 'reference' or 'aten', got {kernel!r}.")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size, self.kernel = group_size, kernel
        packed, scale, zp = quantize_int4(linear.weight, group_size)
        self.register_buffer("packed", packed)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zp.to(torch.uint8))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self._aten: tuple[torch.Tensor, torch.Tensor] | None = None

    def _aten_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._aten is None:
            q = unpack_int4(self.packed).to(torch.int32)
            w_packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
            zero = (8 - self.zero_point.float()) * self.scale
            self._aten = (w_packed, torch.stack([self.scale.t(), zero.t()], -1).contiguous())
        return self._aten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "aten" and x.numel() // self.in_features <= self.aten_max_rows:
            w_packed, sz = self._aten_weights()
            y = torch._weight_int4pack_mm_for_cpu(
                x.reshape(-1, self.in_features), w_packed, self.group_size, sz
            )
            y = y.reshape(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias
        w = dequantize_int4(self.packed, self.scale, self.zero_point, self.group_size)
        return nn.functional.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}→{self.out_features}, int4 group {self.group_size}, kernel={self.kernel}"


def block_linears(model: nn.Module) -> list[str]:
    """Names of the Linear layers inside the transformer blocks (not the output head)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks.")]


def int4_weight_only(
    model: nn.Module, group_size: int, kernel: str = "reference", names: Iterable[str] | None = None
) -> nn.Module:
    """A copy of ``model`` with its Linear layers (default: all) replaced by :class:`Int4Linear`."""
    model = copy.deepcopy(model).eval()
    wanted = set(names) if names is not None else None
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear) and (wanted is None or name in wanted):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, Int4Linear(mod, group_size, kernel))
    return model


@torch.no_grad()
def input_norms(
    model: nn.Module, batches: Iterable[torch.Tensor], names: Iterable[str]
) -> dict[str, torch.Tensor]:
    """``‖X_j‖₂`` of every input feature ``j`` of each named Linear over all calibration tokens."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(mod: nn.Module, args: tuple, _out: torch.Tensor, name: str = name) -> None:
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.pow(2).sum(0)

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        for x in batches:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: s.sqrt() for n, s in sums.items()}


def wanda_score(weight: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``|W_ij| · ‖X_j‖₂`` (``norm``: one value per input feature)."""
    return weight.detach().abs() * norm[None, :]


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` highest scores in every group of ``m`` consecutive inputs of each row."""
    out_f, in_f = score.shape
    if in_f % m:
        raise ValueError(f"in_features {in_f} is not a multiple of m={m}.")
    groups = score.reshape(out_f, in_f // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(out_f, in_f)


def row_unstructured_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Unstructured: drop the ``sparsity`` fraction of lowest scores **within each output row**."""
    out_f, in_f = score.shape
    k = int(round(sparsity * in_f))
    keep = torch.ones_like(score, dtype=torch.bool)
    if k:
        keep.scatter_(1, score.topk(k, dim=1, largest=False).indices, False)
    return keep


def prune_linears(
    model: nn.Module,
    norms: dict[str, torch.Tensor] | None,
    names: Iterable[str],
    sparsity: float = 0.5,
    nm: tuple[int, int] | None = None,
) -> nn.Module:
    """One-shot pruning of a copy: score ``|W|`` (``norms=None``, magnitude) or Wanda's
    ``|W|·‖X‖``; ``nm=(2, 4)`` for N:M, else unstructured per row at ``sparsity``."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name in names:
            lin = model.get_submodule(name)
            w = lin.weight
            score = w.abs() if norms is None else wanda_score(w, norms[name])
            mask = nm_mask(score, *nm) if nm else row_unstructured_mask(score, sparsity)
            w.mul_(mask)
    return model


def semi_structured_status() -> str:
    """Try ``torch.sparse.to_sparse_semi_structured`` on a CPU tensor; say what happens."""
    w = torch.randn(64, 64)
    w = w * nm_mask(w.abs(), 2, 4)
    try:
        from torch.sparse import to_sparse_semi_structured

        to_sparse_semi_structured(w)
    except Exception as err:  # the expected outcome on a CPU
        return f"to_sparse_semi_structured on CPU: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return "to_sparse_semi_structured accepted a CPU tensor"
