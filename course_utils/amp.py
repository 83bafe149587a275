"""Automatic mixed precision (chapter 7): device choice, autocast, one AMP training step,
what this CPU can do in bf16, and the floating-point formats.

Today's API only: ``torch.autocast(device_type, dtype)`` and ``torch.amp.GradScaler(device_type)``.
Never ``torch.cuda.amp.*`` (deprecated) and never NVIDIA apex (see ``APEX_TO_TORCH``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AmpConfig",
    "pick_amp_config",
    "autocast",
    "make_grad_scaler",
    "mixed_precision_step",
    "CpuFeatures",
    "cpu_features",
    "FORMAT_BITS",
    "FloatFormat",
    "float_format",
    "format_table",
    "representable_values",
    "APEX_TO_TORCH",
    "autocast_dtypes",
    "threads",
    "AutocastModule",
]


# --- where to run and in which low-precision dtype ----------------------------------------


@dataclass(frozen=True)
class AmpConfig:
    """Where AMP runs: ``device_type`` ("cuda" or "cpu") and the low-precision ``dtype``.

    ``use_scaler`` is True for float16, whose small range needs loss scaling; bfloat16 has
    float32's exponent range, so a scaler is optional there.
    """

    device_type: str
    dtype: torch.dtype

    @property
    def device(self) -> torch.device:
        return torch.device(self.device_type)

    @property
    def use_scaler(self) -> bool:
        return self.dtype == torch.float16

    def __str__(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        scaler = "GradScaler on" if self.use_scaler else "GradScaler optional"
        return f"AMP on {self.device_type} with {dt} ({scaler})"


def pick_amp_config(prefer_cuda: bool = True) -> AmpConfig:
    """CUDA with float16 when a GPU is present (bfloat16 on GPUs that support it), else CPU bfloat16."""
    if prefer_cuda and torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return AmpConfig("cuda", dtype)
    return AmpConfig("cpu", torch.bfloat16)


def autocast(config: AmpConfig, enabled: bool = True) -> contextlib.AbstractContextManager:
    """``torch.autocast(config.device_type, dtype=config.dtype)``: the region that runs in low precision."""
    return torch.autocast(config.device_type, dtype=config.dtype, enabled=enabled)


def make_grad_scaler(config: AmpConfig, enabled: bool | None = None, **kwargs: float) -> torch.amp.GradScaler:
    """``torch.amp.GradScaler(config.device_type, ...)``; enabled by default only for float16."""
    on = config.use_scaler if enabled is None else enabled
    return torch.amp.GradScaler(config.device_type, enabled=on, **kwargs)


def mixed_precision_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    device_type: str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    max_norm: float | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    enabled: bool = True,
) -> float:
    """One AMP step; returns the (unscaled) loss as a float.

    forward + loss under ``torch.autocast`` → ``scaler.scale(loss).backward()`` (backward
    outside autocast) → ``scaler.unscale_`` then clip to ``max_norm`` (clipping must see the
    true gradients) → ``scaler.step`` (skipped when a gradient is inf/NaN) → ``scaler.update()``.
    ``enabled=False`` runs the same step in float32 (a fair baseline).
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=dtype, enabled=enabled):
        loss = loss_fn(model(x), y)
    scaler.scale(loss).backward()
    if max_norm is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def autocast_dtypes(
    ops: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    device_type: str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> dict[str, torch.dtype]:
    """Run each op on float32 ``x`` inside autocast and return the output dtype: the op rules, observed."""
    out = {}
    with torch.autocast(device_type, dtype=dtype):
        for name, op in ops.items():
            out[name] = op(x).dtype
    return out


# --- what this CPU has -----------------------------------------------------------------------

#: cpuinfo flags that matter for low-precision math on x86 (what each one gives).
CPU_FLAGS: dict[str, str] = {
    "avx2": "256-bit vectors (fp32 baseline)",
    "avx512f": "512-bit vectors",
    "avx512_bf16": "bf16 dot products (VDPBF16PS)",
    "amx_tile": "AMX tile registers",
    "amx_bf16": "AMX bf16 matrix multiply",
    "avx512_fp16": "native fp16 arithmetic",
    "avx512_vnni": "int8 dot products (VNNI, used by int8 quantized kernels)",
    "amx_int8": "AMX int8 matrix multiply",
}


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name, the low-precision flags it reports, and PyTorch's ISA level."""

    model_name: str
    flags: dict[str, bool]
    torch_capability: str

    @property
    def native_bf16(self) -> bool:
        """True when the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
        return self.flags.get("avx512_bf16", False) or self.flags.get("amx_bf16", False)

    def __str__(self) -> str:
        lines = [f"CPU: {self.model_name}", f"PyTorch CPU capability: {self.torch_capability}"]
        for flag, what in CPU_FLAGS.items():
            lines.append(f"  {'yes' if self.flags.get(flag) else 'no ':>3}  {flag:<12} {what}")
        verdict = (
            "has native bf16 instructions: bf16 matmuls can beat fp32"
            if self.native_bf16
            else "no native bf16: bf16 is emulated (converted to fp32 and back), often slower than fp32"
        )
        lines.append(f"=> this CPU {verdict}.")
        return "\n".join(lines)


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """Parse ``cpuinfo`` (a path, or its text) for the flags in ``CPU_FLAGS``.

    On systems without /proc/cpuinfo (macOS, Windows) every flag reads False and the model
    name is "unknown"; PyTorch's own capability string is still reported.
    """
    text = ""
    if isinstance(cpuinfo, Path) or (isinstance(cpuinfo, str) and "\n" not in cpuinfo):
        try:
            text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    else:
        text = cpuinfo
    model_name, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model_name == "unknown":
            model_name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # very old builds
        capability = "unknown"
    return CpuFeatures(model_name, {f: f in flags for f in CPU_FLAGS}, capability)


# --- floating-point formats --------------------------------------------------------------------

#: (exponent bits, mantissa bits) — the sign bit is the remaining one.
FORMAT_BITS: dict[torch.dtype, tuple[int, int]] = {
    torch.float32: (8, 23),
    torch.float16: (5, 10),
    torch.bfloat16: (8, 7),
}


@dataclass(frozen=True)
class FloatFormat:
    """Range and precision of a float dtype, read from ``torch.finfo``.

    ``eps`` = 2^-mantissa_bits (gap after 1.0), ``smallest_normal`` = 2^(1-bias),
    ``smallest_subnormal`` = smallest_normal · eps, ``max`` = (2 - eps) · 2^bias.
    """

    name: str
    bits: int
    exponent_bits: int
    mantissa_bits: int
    max: float
    smallest_normal: float
    smallest_subnormal: float
    eps: float
    decimal_digits: int


def float_format(dtype: torch.dtype) -> FloatFormat:
    """The ``FloatFormat`` of a floating dtype (float32, float16, bfloat16, float64, …)."""
    if not dtype.is_floating_point:
        raise TypeError(f"float_format needs a floating-point dtype, got {dtype}.")
    fi = torch.finfo(dtype)
    exp_bits, man_bits = FORMAT_BITS.get(dtype, (None, None))
    if exp_bits is None:  # derive from finfo: eps = 2^-m, max exponent = 2^(e-1) - 1
        man_bits = round(-torch.log2(torch.tensor(fi.eps, dtype=torch.float64)).item())
        exp_bits = fi.bits - 1 - man_bits
    return FloatFormat(
        name=str(dtype).replace("torch.", ""),
        bits=fi.bits,
        exponent_bits=exp_bits,
        mantissa_bits=man_bits,
        max=float(fi.max),
        smallest_normal=float(fi.smallest_normal),
        smallest_subnormal=float(fi.smallest_normal) * float(fi.eps),
        eps=float(fi.eps),
        decimal_digits=round(-math.log10(fi.resolution)),
    )


def format_table(dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)) -> str:
    """A fixed-width text table of ``float_format`` for each dtype."""
    head = f"{'format':<9}{'bits':>5}{'exp':>5}{'mant':>5}{'max':>12}{'min normal':>12}{'min subnormal':>15}{'eps':>11}"
    rows = [head, "-" * len(head)]
    for d in dtypes:
        f = float_format(d)
        rows.append(
            f"{f.name:<9}{f.bits:>5}{f.exponent_bits:>5}{f.mantissa_bits:>5}{f.max:>12.4g}"
            f"{f.smallest_normal:>12.4g}{f.smallest_subnormal:>15.4g}{f.eps:>11.4g}"
        )
    return "\n".join(rows)


def representable_values(dtype: torch.dtype, lo: float, hi: float) -> torch.Tensor:
    """Every finite value of a 16-bit float dtype in ``[lo, hi]``, sorted (as float32).

    Built by reinterpreting all 65,536 bit patterns, so nothing is approximated.
    """
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"representable_values enumerates 16-bit formats only, got {dtype}.")
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo}, hi={hi}.")
    v = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype).float()
    v = v[torch.isfinite(v) & (v >= lo) & (v <= hi)]
    return torch.unique(v)  # sorted; +0 and -0 collapse


# --- the old NVIDIA apex API and what replaces it ---------------------------------------------

#: apex ``amp.initialize(model, opt, opt_level=...)`` levels → today's PyTorch.
APEX_TO_TORCH: dict[str, str] = {
    "O0": "no AMP: plain float32 training (just do not use autocast)",
    "O1": "torch.autocast(device_type, dtype=...) around forward+loss, plus torch.amp.GradScaler "
    "for float16 — the recommended path",
    "O2": "'almost fp16' (fp16 weights + fp32 master copy): no direct equivalent; use autocast "
    "(O1); for bf16 weights, model.to(torch.bfloat16) with an fp32-master optimizer is manual",
    "O3": "pure float16: model.half() — no fp32 master weights, no loss scaling; unstable, only "
    "as a speed baseline",
    "amp.scale_loss(loss, opt)": "scaler.scale(loss).backward(); scaler.step(opt); scaler.update()",
    "amp.master_params(opt)": "clip after scaler.unscale_(opt) on model.parameters()",
    "amp.state_dict()": "scaler.state_dict() (save it with the checkpoint)",
}


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads(n)``."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class AutocastModule(nn.Module):
    """Wrap a model so that ``forward`` runs under ``torch.autocast`` (e.g. to time bf16 inference).

    The output is cast back to float32 so that callers (accuracy, losses) see the usual dtype.
    """

    def __init__(
        self, model: nn.Module, device_type: str = "cpu", dtype: torch.dtype = torch.bfloat16
    ) -> None:
        super().__init__()
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(x).float()
