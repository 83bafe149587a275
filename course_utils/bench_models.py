"""The bench's models: every compressed variant from the same fp32 weights, their measurements
(accuracy ± SE, size, FLOPs, interleaved latency vs the best fp32) and the chapter targets."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .bench import BenchConfig
    from .speed import SpeedTable

__all__ = [
    "SIZE_TARGETS",
    "SPEED_TARGETS",
    "TIMED_AS",
    "available_threads",
    "ModelRow",
    "Target",
    "build_variants",
    "measure_variants",
    "speed_candidates",
    "targets",
]

# (variant, minimum, what is compared) — the chapter targets the report checks.
SPEED_TARGETS = {"static int8": 2.0, "QAT int8": 2.0, "50% channels": 1.5}
SIZE_TARGETS = {"static int8": 3.5, "QAT int8": 3.5}


@dataclass
class ModelRow:
    """One variant's measurements. ``speedup[t]`` = best fp32 latency / this latency at ``t``
    threads (the fastest fp32 row of the interleaved run); ``size_ratio`` = fp32 bytes / bytes."""

    name: str
    how: str
    accuracy: float
    params: int
    nonzero: int
    size_bytes: int
    flops: int | None
    flops_note: str
    latency_ms: dict[int, float]  # threads -> median ms
    speedup: dict[int, float] = field(default_factory=dict)
    size_ratio: float = 1.0
    accuracy_se: float = 0.0  # binomial standard error of ``accuracy`` (a fraction)
    timed_as: dict[int, str] = field(default_factory=dict)  # threads -> row of the interleaved run


@dataclass
class Target:
    """A chapter target and whether this run met it; ``counted=False`` rows are shown for information."""

    what: str
    value: float
    minimum: float
    counted: bool = True

    @property
    def passed(self) -> bool:
        return self.value >= self.minimum


def build_variants(cfg: BenchConfig, loaders: dict, bar: Any) -> dict[str, tuple[nn.Module, str]]:
    """Every variant from the same pretrained fp32 weights: ``{name: (model, how it was made)}``."""
    from . import pruning as P
    from . import quantization as Q
    from .training import pretrained, seed_everything

    seed_everything(0)
    e = cfg.epochs
    fp32 = pretrained("course_cnn_quant", progress=cfg.progress)  # stubs are identities in fp32
    out: dict[str, tuple[nn.Module, str]] = {
        "fp32": (fp32, "pretrained CourseCNN (Conv-BN-ReLU ×2, Linear ×2)")
    }
    bar.set_postfix_str("dynamic int8")
    out["dynamic int8"] = (
        Q.dynamic_ptq(fp32),
        "quantize_dynamic: Linear weights int8, activations per batch",
    )
    bar.update()
    bar.set_postfix_str("static int8")
    static = Q.static_ptq(fp32, loaders["train"], num_batches=8)
    engine = torch.backends.quantized.engine
    out["static int8"] = (static, f"fuse → prepare → calibrate 8 train batches → convert ({engine})")
    bar.update()
    bar.set_postfix_str("QAT int8")
    qat = Q.prepare_qat_model(fp32)
    Q.qat_finetune(
        qat,
        loaders,
        epochs=e,
        freeze_bn_epoch=1 if e > 1 else None,
        freeze_observer_epoch=e - 1 if e > 1 else None,
        progress=cfg.progress,
    )
    out["QAT int8"] = (Q.convert_qat(qat), f"fuse_qat → prepare_qat → {e} epoch(s) QAT → convert")
    bar.update()
    bar.set_postfix_str("50% channels")
    slim = P.remove_channels(fp32, 0.5)  # the course's default channel criterion
    P.finetune(slim, loaders, epochs=e, progress=cfg.progress, desc="fine-tune 50% channels")
    c1, c2 = slim.features[0].out_channels, slim.features[4].out_channels
    crit = getattr(P, "DEFAULT_CHANNEL_CRITERION", "default")
    out["50% channels"] = (
        slim,
        f"remove_channels(0.5), criterion {crit} ({c1}, {c2} channels kept), {e} epoch(s) fine-tune",
    )
    bar.update()
    bar.set_postfix_str("90% unstructured")
    sparse = P.global_magnitude_prune(copy.deepcopy(fp32), 0.9)
    P.finetune(sparse, loaders, epochs=e, progress=cfg.progress, desc="fine-tune 90% sparse")
    P.make_permanent(sparse)
    out["90% unstructured"] = (
        sparse,
        f"global L1 90% (masks kept at 0), {e} epoch(s) fine-tune, dense storage",
    )
    bar.update()
    return out


def _float_twin_flops(name: str, fp32: nn.Module, x: torch.Tensor) -> tuple[int | None, str]:
    """FlopCounterMode cannot see quantized ops: count the float graph the int8 model came from."""
    from .metrics import count_flops

    if name == "dynamic int8":
        return count_flops(fp32, x), "float graph; Linear MACs run in int8"
    from .quantization import fuse_course_cnn

    return count_flops(
        fuse_course_cnn(copy.deepcopy(fp32).eval()), x
    ), "fused float graph; all MACs run in int8"


# Which row of the interleaved run gives each variant's latency in the models table.
TIMED_AS = {
    "fp32": ("fp32 eager NCHW",),
    "dynamic int8": ("dynamic int8 eager",),
    "static int8": ("int8 eager (static PTQ)",),
    "QAT int8": ("QAT int8 eager",),
    "50% channels": ("50% channels eager NCHW", "50% channels BN folded, channels_last"),  # the faster
    "90% unstructured": ("90% unstructured eager NCHW",),
}


def speed_candidates(
    variants: dict[str, tuple[nn.Module, str]], loaders: dict, x: torch.Tensor, cfg: BenchConfig
) -> list:
    """The decomposition (fp32 layouts, compile, int8 eager, int8 PT2E compiled, 50 % channels)
    plus the other variants, all timed in the same interleaved rounds."""
    from .speed import Candidate, decomposition

    cands = decomposition(
        variants["fp32"][0],
        loaders["train"],
        x,
        int8=variants["static int8"][0],
        pruned=variants["50% channels"][0],
        compile=cfg.compile,
    )
    cands += [
        Candidate("QAT int8 eager", variants["QAT int8"][0], variants["QAT int8"][1], "int8"),
        Candidate("dynamic int8 eager", variants["dynamic int8"][0], variants["dynamic int8"][1], "int8"),
        Candidate("90% unstructured eager NCHW", variants["90% unstructured"][0], variants["90% unstructured"][1], "sparse"),
    ]  # fmt: skip
    return cands


def measure_variants(
    variants: dict[str, tuple[nn.Module, str]], splits: Any, loaders: dict, cfg: BenchConfig
) -> tuple[list[ModelRow], dict[int, SpeedTable]]:
    """Accuracy (± SE), counts, size, FLOPs of every variant, and one interleaved speed run per
    thread count (1 and all); latency ratios are against the best fp32 of that run."""
    from .metrics import (
        count_flops,
        count_nonzero_parameters,
        count_parameters,
        measure_accuracy,
        model_size_bytes,
    )
    from .speed import measure_interleaved

    x = splits.example_input(cfg.batch)
    one = splits.example_input(1)
    fp32 = variants["fp32"][0]
    rows: dict[str, ModelRow] = {}
    for name, (model, how) in variants.items():
        flops, note = count_flops(model, one), "per image"
        if flops is None:
            flops, note = _float_twin_flops(name, fp32, one)
        acc = measure_accuracy(model, loaders["test"])
        rows[name] = ModelRow(
            name=name,
            how=how,
            accuracy=acc.value,
            accuracy_se=acc.se,
            params=count_parameters(model),
            nonzero=count_nonzero_parameters(model),
            size_bytes=model_size_bytes(model),
            flops=flops,
            flops_note=note,
            latency_ms={},
        )
    cands = speed_candidates(variants, loaders, x, cfg)
    tables = {
        t: measure_interleaved(
            cands, x, threads=t, repeats=cfg.rounds, block_s=cfg.min_run_time, progress=cfg.progress
        )
        for t in sorted({1, available_threads()})
    }
    base = rows["fp32"]
    for row in rows.values():
        row.size_ratio = base.size_bytes / row.size_bytes
        for t, table in tables.items():
            timed = [table[n] for n in TIMED_AS[row.name] if table[n].median_ms is not None]
            if timed:
                best = min(timed, key=lambda r: r.median_ms)
                row.latency_ms[t], row.speedup[t], row.timed_as[t] = (
                    best.median_ms,
                    best.vs_best_fp32,
                    best.name,
                )
    return list(rows.values()), tables


def targets(rows: list[ModelRow]) -> list[Target]:
    """The chapter targets: int8 ≥ 2× faster and ≥ 3.5× smaller; 50 % channels ≥ 1.5× faster,
    each speed-up against the **best** fp32 variant of the interleaved run.

    Speed targets count at 1 thread (how the lessons measure latency); the all-threads ratios
    are listed too, for information, because on a shared machine they are the noisiest.
    """
    by = {r.name: r for r in rows}
    out = []
    for name, minimum in SPEED_TARGETS.items():
        for threads, s in sorted(by[name].speedup.items()):
            t = "thread" if threads == 1 else "threads"
            out.append(
                Target(f"{name} faster than the best fp32 ({threads} {t})", s, minimum, counted=threads == 1)
            )
    for name, minimum in SIZE_TARGETS.items():
        out.append(Target(f"{name} smaller than fp32 (state_dict bytes)", by[name].size_ratio, minimum))
    return out


def available_threads() -> int:
    """CPU threads this process may use (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
