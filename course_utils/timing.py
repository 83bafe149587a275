"""Interleaved timing: the one measuring loop behind every latency figure of the course,
and :func:`measure_latency` for one model on its own.

On a shared machine the load changes while a benchmark runs, so timing model A for ten seconds
and then model B compares A under one load with B under another. Here every variant runs one
*block* of calls in turn, ``rounds`` times, in an order rotated each round (no variant always
follows the same one, e.g. the one that leaves the caches cold); a change of load hits every
variant alike, and the median over rounds (or the median of per-round ratios) is what counts.

Users: :func:`course_utils.speed.measure_interleaved` (models, compiled or not),
:func:`course_utils.latency.interleaved_ms` (runtimes with their own thread pools),
:func:`course_utils.lm_measure.interleaved_ms` (decode / prefill) and
:func:`course_utils.capstone.interleaved_speedup` (the grader's per-round ratio).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import median
from typing import Any

import torch
from torch import nn

__all__ = [
    "Latency",
    "as_args",
    "calls_per_block",
    "interleaved_rounds",
    "load_average",
    "measure_latency",
    "median_ms",
    "num_threads",
]


def load_average() -> float | None:
    """The 1-minute load average (runnable processes; above the number of CPUs means contention)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


@contextmanager
def num_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the caller's count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _block(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def calls_per_block(fn: Callable[[], Any], block_s: float) -> int:
    """How many calls of ``fn`` fill about ``block_s`` seconds (at least 1), from one timed call."""
    return max(1, round(block_s / max(_block(fn, 1), 1e-6)))


def interleaved_rounds(
    fns: Mapping[str, Callable[[], Any]],
    threads: int = 1,
    warmup: int = 2,
    rounds: int = 7,
    number: int | Mapping[str, int] | None = None,
    block_s: float = 0.1,
    on_block: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument ``fns[name]`` in each of ``rounds`` rounds.

    Under ``torch.inference_mode()`` with ``threads`` torch threads (restored afterwards;
    runtimes with their own pools must be built with the same count): ``warmup`` untimed calls
    of each, then ``rounds`` rounds; in round ``r`` the variants run in the order rotated by
    ``r``, each one block of ``number`` calls (an int for all, a per-name mapping, or ``None``:
    as many calls as fill ``block_s`` seconds, from one timed call after the warm-up).
    ``on_block`` is called after every block (a progress bar's ``update``).
    """
    if threads < 1 or warmup < 0 or rounds < 1 or block_s <= 0:
        raise ValueError("need threads >= 1, rounds >= 1, warmup >= 0 and block_s > 0.")
    if not fns:
        raise ValueError("interleaved_rounds() needs at least one function to time.")
    names = list(fns)
    calls: dict[str, int] = {}
    times: dict[str, list[float]] = {n: [] for n in names}
    with num_threads(threads), torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                fns[name]()
            if number is None:
                calls[name] = calls_per_block(fns[name], block_s)
            else:
                calls[name] = number if isinstance(number, int) else number[name]
            if calls[name] < 1:
                raise ValueError(f"number of calls per block must be >= 1, got {calls[name]} for {name!r}.")
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(_block(fns[name], calls[name]))
                if on_block is not None:
                    on_block()
    return times


def median_ms(times: Mapping[str, list[float]]) -> dict[str, float]:
    """Median milliseconds per call of each variant, from :func:`interleaved_rounds` seconds."""
    return {name: 1e3 * median(ts) for name, ts in times.items()}


def as_args(example_input: torch.Tensor | tuple) -> tuple:
    """A model's positional arguments: a tuple stays, a single tensor becomes ``(tensor,)``."""
    return example_input if isinstance(example_input, tuple) else (example_input,)


def _fmt_ms(ms: float) -> str:
    """Three significant digits, trailing zeros kept: 5.30 ms, 0.588 ms, 123 ms."""
    return f"{ms:#.3g}".rstrip(".") + " ms"


@dataclass(frozen=True)
class Latency:
    """Median wall time of one forward pass on a batch, with how it was measured."""

    median_ms: float
    iqr_ms: float
    threads: int
    batch_size: int
    runs: int

    def __str__(self) -> str:
        t = "thread" if self.threads == 1 else "threads"
        return f"{_fmt_ms(self.median_ms)} (batch {self.batch_size}, {self.threads} {t})"


def measure_latency(
    model: nn.Module,
    example_input: torch.Tensor | tuple,
    threads: int = 1,
    min_run_time: float = 1.0,
) -> Latency:
    """Median forward latency with ``torch.utils.benchmark.Timer.blocked_autorange``.

    Runs in eval mode under ``torch.inference_mode()`` with ``threads`` intra-op threads;
    the timer warms up, then repeats blocks of calls for at least ``min_run_time`` seconds.
    """
    from torch.utils import benchmark

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}.")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be > 0 seconds, got {min_run_time}.")
    args = as_args(example_input)
    batch = int(args[0].shape[0]) if args and isinstance(args[0], torch.Tensor) and args[0].dim() else 1
    was_training = model.training
    model.eval()
    try:
        timer = benchmark.Timer(
            stmt="model(*args)", globals={"model": model, "args": args}, num_threads=threads
        )
        with torch.inference_mode():
            m = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        model.train(was_training)
    return Latency(
        median_ms=m.median * 1e3,
        iqr_ms=m.iqr * 1e3,
        threads=threads,
        batch_size=batch,
        runs=len(m.times) * m.number_per_run,
    )
