"""Chapter 8 capstone (exercise 8.3): the reference ``compress`` from the solution notebook meets
every target of the report card, graded identically twice; plausible wrong submissions lose the
targets they miss, with the measured numbers in the message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from course_utils.exercise import get_exercise
from course_utils.notebooks import solution_namespace
from course_utils.pruning import remove_channels
from course_utils.quantization import static_ptq

ROOT = Path(__file__).resolve().parents[1]
EX = get_exercise("8.3")


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return [(c, EX.reference(c)) for c in EX.cases(hidden=True)]


def _grade(fn: Any, cases: list) -> dict[str, str]:
    """``{target: "passed: …" or "failed: …"}`` as the grader judges them."""
    out = {}
    for inputs, expected in cases:
        got = EX.run(fn, inputs)
        try:
            out[inputs["target"]] = "passed: " + EX.compare(got, expected, inputs)
        except AssertionError as err:
            out[inputs["target"]] = f"failed: {err}"
    return out


def test_one_case_per_target_and_no_test_split_in_the_inputs(cases) -> None:
    assert [c["target"] for c, _ in cases] == ["size", "speed", "accuracy"]
    assert EX.points % 3 == 0 and EX.timeout and EX.timeout >= 120
    inputs, expected = cases[0]
    seen = {x.numpy().tobytes() for x in torch.cat([inputs["train_x"], inputs["val_x"]])}
    leaked = sum(x.numpy().tobytes() in seen for x in expected["test_x"])
    assert leaked < len(expected["test_y"]) // 20  # digits holds a few duplicate images, not the split


def test_reference_meets_every_target_and_grades_the_same_twice(cases) -> None:
    compress = solution_namespace(ROOT / "solutions" / "08_capstone.ipynb")["compress"]
    first, second = _grade(compress, cases), _grade(compress, cases)
    assert all(v.startswith("passed") for v in first.values()), first
    assert {k: v.split(":")[0] for k, v in first.items()} == {k: v.split(":")[0] for k, v in second.items()}
    assert "× smaller" in first["size"] and "× faster" in first["speed"] and "%" in first["accuracy"]


def test_returning_the_fp32_model_scores_nothing(cases) -> None:
    res = _grade(lambda model, loaders: model, cases)
    assert res["size"].startswith("failed: size: 1.00× smaller"), res["size"]
    assert res["speed"].startswith("failed") and "remove whole channels" in res["speed"], res["speed"]
    assert res["accuracy"].startswith("failed: accuracy: counts only for a compressed model"), res["accuracy"]


def test_int8_without_pruning_misses_the_size_target(cases) -> None:
    def only_int8(model, loaders):
        return static_ptq(model, loaders["train"], num_batches=4)

    res = _grade(only_int8, cases[:1])
    assert res["size"].startswith("failed") and "classifier.1" in res["size"], res["size"]


def test_pruning_without_finetuning_fails_accuracy(cases) -> None:
    res = _grade(lambda model, loaders: remove_channels(model, (0.75, 0.9)), cases[2:])
    assert res["accuracy"].startswith("failed") and "Fine-tune after pruning" in res["accuracy"], res


def test_non_module_and_untraceable_results_raise_clear_errors(cases) -> None:
    inputs = cases[0][0]
    with pytest.raises(TypeError, match="must return an nn.Module"):
        EX.run(lambda model, loaders: model.state_dict(), inputs)

    class DictOut(nn.Module):
        def forward(self, x):
            return {"logits": x.flatten(1)[:, :10], "n": len(x)}

    with pytest.raises(TypeError, match="cannot be traced"):
        EX.run(lambda model, loaders: DictOut(), inputs)


def test_wrong_output_shape_is_explained(cases) -> None:
    inputs, expected = cases[2]
    got = EX.run(lambda model, loaders: nn.Flatten(), inputs)
    with pytest.raises(AssertionError, match=r"\(64, 10\) logits"):
        EX.compare(got, expected, inputs)
    assert isinstance(got["archive"], torch.Tensor) and got["archive"].dtype == torch.uint8
