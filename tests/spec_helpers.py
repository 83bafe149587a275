"""Helpers shared by the spec tests: run every case the grader runs, expect helpful failures."""

from __future__ import annotations

from typing import Any

import pytest

from course_utils.exercise import get_exercise


def run_all_cases(ex_id: str, obj: Any) -> int:
    """Run public + hidden + edge cases as the grader does; raise the first AssertionError."""
    ex = get_exercise(ex_id)
    cases = ex.cases(hidden=True)
    for inputs in cases:
        ex.compare(ex.run(obj, inputs), ex.reference(inputs), inputs)
    return len(cases)


def fails_with(ex_id: str, obj: Any, *fragments: str) -> str:
    """Assert that ``obj`` fails exercise ``ex_id`` with a message containing every fragment."""
    with pytest.raises(AssertionError) as info:
        run_all_cases(ex_id, obj)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"message for a wrong {ex_id} lacks {f!r}:\n{msg}"
    return msg
