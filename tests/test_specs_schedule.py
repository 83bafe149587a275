"""Chapter 2 exercises 2.5 (the AGP schedule) and 2.6 (lottery ticket with rewinding): the references
from the solution notebook pass every case; plausible wrong versions (a linear ramp, a slow-start
cube, no hold between pruning steps, no final clamp; a mask from the rewound weights, layer-wise
masks, no rewinding, masks without hooks) fail with messages that say what is wrong."""

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


# --- 2.6 winning_ticket ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ticket() -> Any:
    import torch
    from torch import nn
    from torch.nn.utils import prune

    nb = read_notebook(ROOT / "solutions" / "02_masks_and_reparameterization.ipynb")
    src = next(
        c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("def winning_ticket")
    )
    ns: dict[str, Any] = {"torch": torch, "nn": nn, "prune": prune}
    exec(src, ns)
    return ns["winning_ticket"]


def _linear_layers(model):
    from torch import nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def test_reference_ticket_passes(ticket) -> None:
    assert run_all_cases("2.6", ticket) == 5


def test_mask_from_the_rewound_weights_fails() -> None:
    from torch.nn.utils import prune

    def early_mask(model, trained_state, rewind_state, amount):
        model.load_state_dict(rewind_state)
        layers = _linear_layers(model)
        prune.global_unstructured([(m, "weight") for _, m in layers], prune.L1Unstructured, amount=amount)
        return {f"{n}.weight": m.weight_mask for n, m in layers}

    fails_with("2.6", early_mask, "*rewound* weights", "*trained* weights")


def test_layerwise_mask_fails() -> None:
    from torch.nn.utils import prune

    def layerwise(model, trained_state, rewind_state, amount):
        model.load_state_dict(trained_state)
        layers = _linear_layers(model)
        masks = {}
        for n, m in layers:
            prune.l1_unstructured(m, "weight", amount=amount)
            masks[f"{n}.weight"] = m.weight_mask.clone()
            prune.remove(m, "weight")
        model.load_state_dict(rewind_state)
        for n, m in layers:
            prune.custom_from_mask(m, "weight", masks[f"{n}.weight"])
        return masks

    fails_with("2.6", layerwise, "global")


def test_not_rewinding_fails(ticket) -> None:
    def no_rewind(model, trained_state, rewind_state, amount):
        return ticket(model, trained_state, trained_state, amount)

    fails_with("2.6", no_rewind, "*rewind* values")


def test_zeroing_once_without_hooks_fails(ticket) -> None:
    from torch.nn.utils import prune

    def zero_once(model, trained_state, rewind_state, amount):
        masks = ticket(model, trained_state, rewind_state, amount)
        for _, m in _linear_layers(model):
            prune.remove(m, "weight")  # the weights are masked now, but nothing keeps them at 0
        return masks

    fails_with("2.6", zero_once, "after one SGD step", "custom_from_mask")
