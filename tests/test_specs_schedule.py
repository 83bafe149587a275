"""Chapter 2 exercise 2.5 (the AGP schedule): the reference from the solution notebook passes every
case; a linear ramp, a slow-start cube, a schedule without the hold between pruning steps and one
without the final clamp fail with messages that say what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spec_helpers import fails_with, run_all_cases

from course_utils.exercise import get_exercise
from course_utils.notebooks import read_notebook

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def agp() -> Any:
    nb = read_notebook(ROOT / "solutions" / "02_masks_and_reparameterization.ipynb")
    src = next(
        c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("def agp_schedule")
    )
    ns: dict[str, Any] = {}
    exec(src, ns)  # only this cell: the notebook's demo trains models
    return ns["agp_schedule"]


def test_reference_schedule_passes_and_reaches_s_f(agp) -> None:
    assert run_all_cases("2.5", agp) >= 3 + 3 + 2
    for inputs in get_exercise("2.5").cases(hidden=True):
        ref = get_exercise("2.5").reference(inputs)
        assert ref[0] == inputs["s_i"] or inputs["t0"] == 0
        if inputs["t0"] + inputs["n"] * inputs["dt"] < inputs["steps"]:
            assert ref[-1] == pytest.approx(inputs["s_f"])


def _steps(s_i, t0, steps, value):
    return [s_i if t < t0 else value(t) for t in range(steps)]


def test_linear_ramp_fails() -> None:
    def linear(s_i, s_f, t0, n, dt, steps):
        return _steps(s_i, t0, steps, lambda t: s_i + (s_f - s_i) * min(1, ((t - t0) // dt) * dt / (n * dt)))

    fails_with("2.5", linear, "linear ramp", "cubic")


def test_slow_start_cube_fails() -> None:
    def slow(s_i, s_f, t0, n, dt, steps):
        return _steps(s_i, t0, steps, lambda t: s_i + (s_f - s_i) * min(1, ((t - t0) // dt) / n) ** 3)

    fails_with("2.5", slow, "starts slowly")


def test_no_hold_between_pruning_steps_fails() -> None:
    def continuous(s_i, s_f, t0, n, dt, steps):
        return _steps(s_i, t0, steps, lambda t: s_f + (s_i - s_f) * max(0.0, 1 - (t - t0) / (n * dt)) ** 3)

    fails_with("2.5", continuous, "not a pruning step")


def test_no_clamp_after_the_end_fails() -> None:
    def unclamped(s_i, s_f, t0, n, dt, steps):
        return _steps(
            s_i, t0, steps, lambda t: s_f + (s_i - s_f) * (1 - ((t - t0) // dt) * dt / (n * dt)) ** 3
        )

    fails_with("2.5", unclamped, "stays at s_f")
