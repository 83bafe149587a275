"""A fair latency harness for comparing runtimes that are not all ``nn.Module``s.

``t_variant`` is the median over ``repeats`` rounds of the per-call time; in each round every
variant runs ``number`` calls in turn (rotated order), so a noisy moment on a shared machine
hits all variants alike and only ratios measured in one run are compared. Every variant is
warmed up first (``torch.compile`` compiles, ONNX Runtime / OpenVINO allocate, caches fill).
Speed-up of a variant = ``t_best_fp32 / t_variant``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .timing import interleaved_rounds, load_average, median_ms

__all__ = ["interleaved_ms", "load_average", "speedups"]


def interleaved_ms(
    fns: Mapping[str, Callable[[], Any]],
    threads: int = 1,
    warmup: int = 2,
    repeats: int = 7,
    number: int = 3,
) -> dict[str, float]:
    """Median milliseconds per call of each zero-argument ``fns[name]``, measured interleaved.

    Runs under ``torch.inference_mode()`` with ``threads`` torch threads (restored afterwards);
    runtimes with their own thread pools (ONNX Runtime, OpenVINO) must be built with the same
    count. ``warmup`` untimed calls each, then ``repeats`` rounds of ``number`` calls each, in an
    order rotated every round (:func:`course_utils.timing.interleaved_rounds`).
    """
    if number < 1:
        raise ValueError(f"number of calls per round must be >= 1, got {number}.")
    return median_ms(interleaved_rounds(fns, threads=threads, warmup=warmup, rounds=repeats, number=number))


def speedups(ms: Mapping[str, float], fp32: list[str]) -> tuple[str, dict[str, float]]:
    """The fastest of the ``fp32`` variants and every variant's speed-up ``t_best / t``."""
    best = min(fp32, key=lambda n: ms[n])
    return best, {n: ms[best] / t for n, t in ms.items()}
