"""Edge cases whose answer is a constant count only together with a regular case.

The grader gives partial credit per case, so an edge case whose expected answer is a constant
(an all-ones mask for ``amount=0``, ``[]`` when nothing can be fused, ``0.0`` for a dense model)
would give credit to a stub that always returns that constant. Such a case is built with
``with_regular(edge, regular)``: the exercise's ``run`` (wrapped by ``paired_run``) then calls
the student's code on both inputs and ``paired_compare`` passes the case only when both
answers are right. A correct solution is unaffected; a constant stub scores 0 on every case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["REGULAR", "with_regular", "paired_run", "paired_reference", "paired_compare"]

#: The key under which an edge case carries its regular companion case.
REGULAR = "together with a regular case"
_EDGE, _REG = "edge case", "regular case"


def with_regular(edge: dict, regular: dict) -> dict:
    """The inputs of ``edge``, graded together with the (non-constant) case ``regular``."""
    return {**edge, REGULAR: regular}


def _split(inputs: dict) -> tuple[dict, dict | None]:
    if not isinstance(inputs, dict) or REGULAR not in inputs:
        return inputs, None
    return {k: v for k, v in inputs.items() if k != REGULAR}, inputs[REGULAR]


def paired_run(run: Callable[[Any, dict], Any]) -> Callable[[Any, dict], Any]:
    """``run`` for both halves of a paired case (unchanged for an ordinary case)."""

    def run_paired(obj: Any, inputs: dict) -> Any:
        edge, regular = _split(inputs)
        if regular is None:
            return run(obj, inputs)
        return {_EDGE: run(obj, edge), _REG: run(obj, regular)}

    run_paired.__doc__ = run.__doc__
    return run_paired


def paired_reference(reference: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """``reference`` for both halves of a paired case."""

    def reference_paired(inputs: dict) -> Any:
        edge, regular = _split(inputs)
        if regular is None:
            return reference(inputs)
        return {_EDGE: reference(edge), _REG: reference(regular)}

    return reference_paired


def paired_compare(compare: Callable[[Any, Any, dict], None]) -> Callable[[Any, Any, dict], None]:
    """``compare`` for both halves; a failing regular half says why the edge case lost credit."""

    def compare_paired(got: Any, expected: Any, inputs: dict) -> None:
        edge, regular = _split(inputs)
        if regular is None:
            compare(got, expected, inputs)
            return
        if not isinstance(got, dict) or set(got) != {_EDGE, _REG}:
            raise AssertionError("the result of a paired case was not produced by the grader's run.")
        compare(got[_EDGE], expected[_EDGE], edge)
        try:
            compare(got[_REG], expected[_REG], regular)
        except AssertionError as err:
            raise AssertionError(
                f"{err}\n  (This edge case's answer is a constant, so it counts only together with a "
                "regular case — the regular case above failed.)"
            ) from None

    return compare_paired
