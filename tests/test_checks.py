"""The self-check and the comparison it shares with the grader."""

from __future__ import annotations

import pytest
import torch

from course_utils.checks import CheckFailed, Passed, check, hint
from course_utils.exercise import (
    CHAPTERS,
    all_exercises,
    assert_same,
    chapter_exercises,
    get_exercise,
    resolve_chapter,
)


def _sparsity(model: torch.nn.Module) -> float:
    ps = list(model.parameters())
    return sum(int((p == 0).sum()) for p in ps) / sum(p.numel() for p in ps)


def test_check_passes_a_correct_solution(capsys: pytest.CaptureFixture[str]) -> None:
    result = check("1.1", _sparsity)
    assert result and result == True  # noqa: E712 - true for scripts, silent in a notebook
    assert isinstance(result, Passed) and result._ipython_display_() is None
    assert "✓ Exercise 1.1" in capsys.readouterr().out


def test_check_reports_not_implemented() -> None:
    def blank(model: torch.nn.Module) -> float:
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="not implemented yet"):
        check("1.1", blank)


def test_check_reports_a_wrong_value_with_hint() -> None:
    def counts_buffers(model: torch.nn.Module) -> float:
        ts = [*model.parameters(), *model.buffers()]
        return sum(int((t == 0).sum()) for t in ts) / sum(t.numel() for t in ts)

    with pytest.raises(CheckFailed) as info:
        check("1.1", counts_buffers)
    msg = str(info.value)
    assert "differs from PyTorch" in msg and "expected" in msg
    # progressive: the failure names the hint, the recipe comes only on request
    recipe = get_exercise("1.1").hint
    assert 'hint("1.1")' in msg and recipe not in msg


def test_hint_prints_the_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    hint("1.1")
    assert get_exercise("1.1").hint in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="Known exercises"):
        hint("99.9")


def test_check_reports_where_student_code_raised() -> None:
    def broken(model: torch.nn.Module) -> float:
        return 1 / 0

    with pytest.raises(CheckFailed, match=r"ZeroDivisionError.*\n  in broken"):
        check("1.1", broken)


def test_check_unknown_id_lists_known_ids() -> None:
    with pytest.raises(CheckFailed, match="Known exercises: 1.1"):
        check("99.9", _sparsity)


def test_check_failed_renders_short_in_ipython() -> None:
    lines = CheckFailed("line one\nline two")._render_traceback_()
    assert len(lines) == 2 and "line two" in lines[1]


def test_assert_same_messages() -> None:
    with pytest.raises(AssertionError, match=r"result: shape \(2, 3\) but expected \(6,\)"):
        assert_same(torch.zeros(2, 3), torch.zeros(6))
    with pytest.raises(AssertionError, match=r"(?s)1 of 4 entries differ.*at \(2,\): got 5, expected 2"):
        assert_same(torch.tensor([0.0, 1, 5, 3]), torch.tensor([0.0, 1, 2, 3]))
    with pytest.raises(AssertionError, match=r"result\['m'\]\[1\]: got int 3, expected int 4"):
        assert_same({"m": [1, 3]}, {"m": [1, 4]})
    with pytest.raises(AssertionError, match="keys"):
        assert_same({"a": 1}, {"b": 1})
    with pytest.raises(AssertionError, match="expected a tensor"):
        assert_same([1.0], torch.tensor([1.0]))
    assert_same(torch.tensor([True, False]), torch.tensor([1.0, 0.0]))
    assert_same({"x": [torch.ones(2), 0.5]}, {"x": (torch.ones(2), 0.5 + 1e-12)})


def test_registry_ids_match_chapters() -> None:
    exercises = all_exercises()
    assert exercises, "no exercise specs registered"
    for ex in exercises:
        chapter_number = int(ex.id.split(".")[0])
        assert ex.chapter == CHAPTERS[chapter_number]
        assert ex.points > 0 and ex.target.isidentifier()
        assert ex.public_seeds and not set(ex.public_seeds) & set(ex.hidden_seeds)
    assert [e.id for e in chapter_exercises(1)][0] == "1.1"
    assert get_exercise("1.1").target == "sparsity"


@pytest.mark.parametrize("name", [1, "1", "01", "01_pruning_theory"])
def test_resolve_chapter(name: object) -> None:
    assert resolve_chapter(name) == "01_pruning_theory"


def test_resolve_chapter_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="Unknown assignment 'pruning'.*3 \\(03_custom_pruning_methods\\)"):
        resolve_chapter("pruning")
