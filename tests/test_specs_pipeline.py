"""Chapter 1 exercise 1.6 (per-layer sparsities from a sensitivity scan), graded by measurement: the
reference from the solution notebook meets every budget within the accuracy bound on the test
split, identically twice; uniform, budget-ignoring and sensitivity-reversed choices fail with the
measured numbers in the message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from spec_helpers import fails_with
from torch import nn
from torch.nn.utils import prune

from course_utils.exercise import get_exercise
from course_utils.notebooks import read_notebook
from course_utils.specs.ch01_pipeline import course_cnn_macs

ROOT = Path(__file__).resolve().parents[1]
EX = get_exercise("1.6")


@pytest.fixture(scope="module")
def choose() -> Any:
    nb = read_notebook(ROOT / "solutions" / "01_pruning_theory.ipynb")
    src = next(
        c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("def choose_sparsities")
    )
    ns: dict[str, Any] = {}
    exec(src, ns)
    return ns["choose_sparsities"]


def test_reference_meets_every_budget_identically_twice(choose) -> None:
    cases = EX.cases(hidden=True)
    assert len(cases) == 5 and len({c["keep_fraction"] for c in cases}) == 5
    for inputs in cases:
        expected = EX.reference(inputs)
        got = EX.run(choose, inputs)
        first, second = EX.compare(got, expected, inputs), EX.compare(got, expected, inputs)
        assert first == second and "test accuracy" in first and "kept" in first


def test_uniform_sparsity_fails_on_accuracy() -> None:
    def uniform(scan, amounts, baseline, params, keep_fraction, max_drop):
        return {n: min(0.99, 1 - keep_fraction + 0.01) for n in params}

    fails_with("1.6", uniform, "test accuracy", "spare the sensitive ones")


def test_ignoring_the_budget_fails() -> None:
    def cautious(scan, amounts, baseline, params, keep_fraction, max_drop):
        return dict.fromkeys(params, 0.5)  # safe on every layer, but half the weights stay

    fails_with("1.6", cautious, "budget:", "weights kept")


def test_pruning_the_small_layers_hardest_fails() -> None:
    def small_first(scan, amounts, baseline, params, keep_fraction, max_drop):
        big = max(params, key=params.get)
        out = dict.fromkeys(params, 0.95)
        rest = sum(round(0.05 * n) for name, n in params.items() if name != big)
        out[big] = min(0.99, 1 - (keep_fraction * sum(params.values()) - rest) / params[big] + 0.001)
        return out

    fails_with("1.6", small_first, "test accuracy", "features.0")


def test_wrong_types_are_explained() -> None:
    fails_with("1.6", lambda *a, **k: [0.5, 0.5, 0.5, 0.5], "one amount per layer")
    fails_with(
        "1.6",
        lambda scan, amounts, baseline, params, keep_fraction, max_drop: dict.fromkeys(params, 1.0),
        "fraction in [0, 1)",
    )


# --- 1.8 prune_whole_model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole() -> Any:
    from course_utils.metrics import count_flops
    from course_utils.pruning import remove_channels

    nb = read_notebook(ROOT / "solutions" / "01_pruning_theory.ipynb")
    src = next(
        c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("def prune_whole_model")
    )
    ns: dict[str, Any] = {"torch": torch, "count_flops": count_flops, "remove_channels": remove_channels}
    exec(src, ns)
    return ns["prune_whole_model"]


def test_reference_whole_model_meets_budget_and_floor_identically_twice(whole) -> None:
    ex = get_exercise("1.8")
    inputs = ex.cases(hidden=True)[1]  # the tightest budget, 25 %
    got, expected = ex.run(whole, inputs), ex.reference(inputs)
    first, second = ex.compare(got, expected, inputs), ex.compare(got, expected, inputs)
    assert first == second and "after the grader's 2-epoch fine-tune" in first
    assert course_cnn_macs(*got["channels"]) <= 0.25 * course_cnn_macs(32, 64)


def test_masking_channels_instead_of_removing_them_fails() -> None:
    def masked(model, macs_fraction):
        for i in (0, 4):
            prune.ln_structured(model.features[i], "weight", amount=0.6, n=1, dim=0)
            prune.remove(model.features[i], "weight")
        return model

    fails_with("1.8", masked, "MACs:", "remove them")


def test_forgetting_the_linear_inputs_fails() -> None:
    def half_done(model, macs_fraction):
        small = copy.deepcopy(model)
        keep = torch.arange(32)
        small.features[4] = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        small.features[4].weight.data = model.features[4].weight.data[keep]
        small.features[5] = nn.BatchNorm2d(32)
        return small  # classifier[1] still expects 64·16 inputs

    fails_with("1.8", half_done, "do not fit a CourseCNN", "Linear's input features")


def test_overpruning_fails_on_accuracy() -> None:
    from course_utils.pruning import remove_channels

    fails_with(
        "1.8", lambda model, f: remove_channels(model, (0.9, 0.95)), "after the grader's", "bound 1.5 pt"
    )
