"""Exercise spec 10.3 — ``fair_latency(models, x, threads, warmup, repeats)``, checked on models
of known cost (each call sleeps a known time and logs how it was called)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..exercise import Exercise

# --- 10.3 fair_latency -------------------------------------------------------------------------

_SLOW_WARMUP_MS = 25.0  # the first calls of every model: like torch.compile compiling
_OUTLIER_MS = 80.0  # one timed call: a mean over ≤ 7 repeats moves by ≥ 11 ms, the median not at all


class CostModel(nn.Module):
    """A model of known cost: each call sleeps ``base_ms`` (the first ``slow`` calls 25 ms, the
    call numbered ``outlier`` 80 ms more) and logs (name, threads, grad enabled, training)."""

    def __init__(self, name: str, base_ms: float, slow: int, outlier: int, log: list) -> None:
        super().__init__()
        self.name, self.base_ms, self.slow, self.outlier, self.log = name, base_ms, slow, outlier, log
        self.calls = 0
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append([self.name, torch.get_num_threads(), torch.is_grad_enabled(), self.training])
        ms = _SLOW_WARMUP_MS if self.calls < self.slow else self.base_ms
        if self.calls == self.outlier:
            ms += _OUTLIER_MS
        self.calls += 1
        time.sleep(ms / 1e3)
        return x * self.scale


def _lat_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    k = 2 + seed % 2
    factors = [1, 2, 4][:k]
    order = torch.randperm(k, generator=g).tolist()
    names = [f"m{factors[i]}x" for i in order]
    base = {n: 1.5 * factors[i] for n, i in zip(names, order)}
    warmup = 1 + int(torch.randint(3, (), generator=g))
    repeats = 5 + 2 * int(torch.randint(2, (), generator=g))
    return {
        "names": names,
        "base_ms": base,
        "warmup": warmup,
        "repeats": repeats,
        "threads": 1 + seed % 2,
        "outlier": names[int(torch.randint(k, (), generator=g))],
        "x": torch.randn(int(torch.randint(1, 5, (), generator=g)), 3),
    }


def _lat_run(fn, inputs: dict) -> Any:
    log: list = []
    w, r = inputs["warmup"], inputs["repeats"]
    models = {
        n: CostModel(n, inputs["base_ms"][n], w, w + r // 2 if n == inputs["outlier"] else -1, log).train()
        for n in inputs["names"]
    }
    start = 3
    torch.set_num_threads(start)
    got = fn(models, inputs["x"].clone(), threads=inputs["threads"], warmup=w, repeats=r)
    after = torch.get_num_threads()
    torch.set_num_threads(1)
    if isinstance(got, dict):
        got = {str(k): (float(v) if isinstance(v, (int, float)) else str(v)) for k, v in got.items()}
    return {"ms": got, "log": log, "threads_after": after, "threads_before": start}


def _lat_reference(inputs: dict) -> Any:
    return {"ms": dict(inputs["base_ms"])}


def _lat_compare(got: Any, expected: Any, inputs: dict) -> None:
    names, w, r, threads = inputs["names"], inputs["warmup"], inputs["repeats"], inputs["threads"]
    ms, log = got["ms"], got["log"]
    if not isinstance(ms, dict) or set(ms) != set(names):
        raise AssertionError(f"Return {{name: median ms}} for every model {names}; got {ms!r}.")
    counts = {n: sum(1 for e in log if e[0] == n) for n in names}
    if any(c != w + r for c in counts.values()):
        raise AssertionError(
            f"calls per model {counts}, expected warmup + repeats = {w} + {r} = {w + r} each "
            "(warm-up calls first, untimed; then one timed call per model per repeat)."
        )
    timed = log[w * len(names) :]
    warm = log[: w * len(names)]
    if sorted(e[0] for e in warm) != sorted(names * w):
        raise AssertionError(
            "Warm every model up (warmup calls each) before any timed call; then time the models "
            "interleaved: one call of every model per repeat."
        )
    for i in range(r):
        rnd = [e[0] for e in timed[i * len(names) : (i + 1) * len(names)]]
        if sorted(rnd) != sorted(names):
            raise AssertionError(
                f"Timed calls are not interleaved: repeat {i} ran {rnd}. In every repeat run each model "
                "once, so a noisy moment on the machine hits all of them alike."
            )
    bad_threads = {e[1] for e in log if e[1] != threads}
    if bad_threads:
        raise AssertionError(
            f"Models ran with {sorted(bad_threads)} torch threads; threads={threads} was asked."
        )
    if got["threads_after"] != got["threads_before"]:
        raise AssertionError(
            f"torch.get_num_threads() is {got['threads_after']} after your harness, was "
            f"{got['threads_before']} before: restore it (try/finally)."
        )
    if any(e[2] for e in log):
        raise AssertionError(
            "Some calls ran with autograd on: time under torch.inference_mode() (or no_grad)."
        )
    if any(e[3] for e in log):
        raise AssertionError("Some calls ran in training mode: call model.eval() first (BN, dropout).")
    for n in names:
        base = inputs["base_ms"][n]
        if not isinstance(ms[n], float) or not (0.9 * base <= ms[n] <= 1.6 * base + 3.0):
            raise AssertionError(
                f"{n!r} costs {base} ms per call (the models cost {expected['ms']}), your harness "
                f"reports {ms[n]!r} ms. Report milliseconds, the median of the timed calls (one of "
                "them is 80 ms slower: a mean would be skewed by it)."
            )


EXERCISES = [
    Exercise(
        id="10.3",
        title="A fair latency harness",
        target="fair_latency",
        points=2,
        make_case=_lat_case,
        run=_lat_run,
        reference=_lat_reference,
        compare=_lat_compare,
        hint="eval(); warm up; set threads; in each repeat time one call of every model; median; restore threads.",
        timeout=60.0,
    ),
]

__all__ = ["EXERCISES", "CostModel"]
