"""Exercise spec for chapter 2 — the gradual (AGP) pruning schedule.

2.5 ``agp_schedule``: Zhu & Gupta (2017)'s cubic schedule, sampled at every training step, with
the sparsity updated only every ``dt`` steps. The oracle is ``torch.ao.pruning``'s ``CubicSL``
(its ``sparsity_compute_fn``) evaluated at the last pruning step.
"""

from __future__ import annotations

import math
from typing import Any

from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL

from ..exercise import Exercise

_AGP_CASES = [  # (s_i, s_f, t0, n, dt, steps)
    (0.0, 0.9, 0, 10, 5, 60),
    (0.2, 0.8, 7, 4, 3, 30),
    (0.0, 0.5, 3, 6, 1, 15),
    (0.1, 0.95, 10, 8, 10, 100),
    (0.0, 0.75, 0, 3, 7, 20),  # the schedule ends after the last step
]


def _agp_case(seed: int) -> dict:
    s_i, s_f, t0, n, dt, steps = _AGP_CASES[seed % len(_AGP_CASES)]
    return {"s_i": s_i, "s_f": s_f, "t0": t0, "n": n, "dt": dt, "steps": steps}


def _agp_edges() -> list[dict]:
    return [
        {"s_i": 0.3, "s_f": 0.3, "t0": 2, "n": 4, "dt": 2, "steps": 12},  # nothing to prune
        {"s_i": 0.0, "s_f": 0.6, "t0": 0, "n": 1, "dt": 4, "steps": 10},  # one pruning step
    ]


def _agp_run(fn, inputs: dict) -> Any:
    out = fn(**inputs)
    return [float(v) for v in out] if isinstance(out, (list, tuple)) else out


def _agp_reference(inputs: dict) -> list[float]:
    s_i, s_f, t0, n, dt = (inputs[k] for k in ("s_i", "s_f", "t0", "n", "dt"))
    out = []
    for t in range(inputs["steps"]):
        last = t0 + min(n, (t - t0) // dt) * dt if t >= t0 else t0  # the last pruning step ≤ t
        out.append(float(CubicSL.sparsity_compute_fn(s_i, s_f, last, t0, dt, n)))
    return out


def _agp_compare(got: Any, expected: list[float], inputs: dict) -> None:
    if not isinstance(got, list) or len(got) != len(expected):
        n = len(got) if isinstance(got, list) else type(got).__name__
        raise AssertionError(
            f"return a list with one sparsity per step 0..steps-1 ({len(expected)}), got {n}."
        )
    bad = [t for t, (g, e) in enumerate(zip(got, expected)) if not math.isclose(g, e, abs_tol=1e-6)]
    if not bad:
        return
    t = bad[0]
    s_i, s_f, t0, n, dt = (inputs[k] for k in ("s_i", "s_f", "t0", "n", "dt"))
    setting = f"(s_i={s_i}, s_f={s_f}, t0={t0}, n={n}, dt={dt})"
    why = ""
    if t < t0:
        why = " Before t0 the sparsity is s_i."
    elif t >= t0 + n * dt:
        why = " After t0 + n·dt the schedule stays at s_f (clamp: the cube of a negative number undershoots)."
    elif (t - t0) % dt:
        why = f" Step {t} is not a pruning step: keep the value of the last one, t0 + ⌊(t − t0)/dt⌋·dt."
    else:
        frac = (t - t0) / (n * dt)
        lin = s_i + (s_f - s_i) * frac
        slow = s_i + (s_f - s_i) * frac**3
        if math.isclose(got[t], lin, abs_tol=1e-6):
            why = " That is a linear ramp; AGP is cubic: s_f + (s_i − s_f)(1 − (t − t0)/(n·dt))³."
        elif math.isclose(got[t], slow, abs_tol=1e-6):
            why = " That ramp starts slowly; AGP prunes fast first: s_f + (s_i − s_f)(1 − (t − t0)/(n·dt))³."
    raise AssertionError(
        f"step {t}: sparsity {got[t]:.6g}, expected {expected[t]:.6g} {setting}.{why} "
        f"({len(bad)} of {len(expected)} steps differ.)"
    )


EXERCISES = [
    Exercise(
        id="2.5",
        title="agp_schedule: the cubic gradual-pruning schedule",
        target="agp_schedule",
        points=2,
        make_case=_agp_case,
        run=_agp_run,
        reference=_agp_reference,
        compare=_agp_compare,
        edge_cases=_agp_edges,
        public_seeds=(0, 1, 2),
        hint="for each step t: before t0 → s_i; else t' = t0 + min(n, (t − t0) // dt)·dt and "
        "s = s_f + (s_i − s_f)·(1 − (t' − t0)/(n·dt))³.",
    ),
]
