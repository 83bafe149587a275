"""A fair latency harness for comparing runtimes that are not all ``nn.Module``s.

``t_variant`` is the median over ``repeats`` rounds of the per-call time; in each round every
variant runs ``number`` calls in turn (rotated order), so a noisy moment on a shared machine
hits all variants alike and only ratios measured in one run are compared. Every variant is
warmed up first (``torch.compile`` compiles, ONNX Runtime / OpenVINO allocate, caches fill).
Speed-up of a variant = ``t_best_fp32 / t_variant``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from statistics import median
from typing import Any

import torch

__all__ = ["interleaved_ms", "load_average", "speedups"]


def load_average() -> float | None:
    """The 1-minute load average (runnable processes; > number of CPUs means contention)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


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
    count. ``warmup`` untimed calls each, then ``repeats`` rounds of ``number`` calls each.
    """
    if threads < 1 or warmup < 0 or repeats < 1 or number < 1:
        raise ValueError("threads, repeats and number must be >= 1 and warmup >= 0.")
    names = list(fns)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        with torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    fns[name]()
            for r in range(repeats):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    fn = fns[name]
                    t0 = time.perf_counter()
                    for _ in range(number):
                        fn()
                    times[name].append((time.perf_counter() - t0) / number * 1e3)
    finally:
        torch.set_num_threads(before)
    return {n: median(t) for n, t in times.items()}


def speedups(ms: Mapping[str, float], fp32: list[str]) -> tuple[str, dict[str, float]]:
    """The fastest of the ``fp32`` variants and every variant's speed-up ``t_best / t``."""
    best = min(fp32, key=lambda n: ms[n])
    return best, {n: ms[best] / t for n, t in ms.items()}
