"""In-notebook self-checks: ``check("3.2", my_function)``, and ``hint("3.2")``.

The check runs the same test recipe as the grader (see ``course_utils.exercise``) on the
public cases only, and compares with what PyTorch computes. On success it prints one
line (and the cell shows no ``True``); on failure it raises ``CheckFailed`` whose notebook
display is a short message — what differs first — instead of a long traceback. Hints are
progressive: the failure only says that ``hint("3.2")`` exists; calling it shows the recipe.
"""

from __future__ import annotations

import traceback
from typing import Any

from .exercise import get_exercise

__all__ = ["check", "hint", "CheckFailed", "Passed"]


class CheckFailed(AssertionError):
    """A self-check did not pass. IPython shows only the message (``_render_traceback_``)."""

    def _render_traceback_(self) -> list[str]:
        return ["\x1b[31m" + line + "\x1b[0m" for line in str(self).splitlines()]


class Passed:
    """What a passing ``check`` returns: true, equal to ``True``, and silent as a cell's last
    value (the ✓ line is already printed), so the notebook does not echo ``True``."""

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return other is True or isinstance(other, Passed)

    def __hash__(self) -> int:
        return hash(True)

    def __repr__(self) -> str:
        return "Passed"

    def _ipython_display_(self) -> None:
        """Show nothing: the check already printed its ✓ line."""


def hint(exercise_id: str) -> None:
    """Print the recipe for exercise ``exercise_id`` (what to compute, with which PyTorch call)."""
    try:
        ex = get_exercise(exercise_id)
    except KeyError as err:
        raise CheckFailed(str(err.args[0])) from None
    print(f"Hint for exercise {ex.id} ({ex.title}):\n{ex.hint or 'no hint for this one: re-read the task.'}")


def _student_frame(err: BaseException) -> str:
    """The last traceback line that is not course_utils code: where the student's code failed."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "course_utils" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"\n  in {f.name}, line {f.lineno}: {f.line}"


def check(exercise_id: str, obj: Any, hidden: bool = False) -> Passed:
    """Test ``obj`` (your function or class) for exercise ``exercise_id`` on the public cases.

    Returns a true ``Passed`` when every case matches the PyTorch reference, else raises
    ``CheckFailed`` saying what differs first (and that ``hint(id)`` shows the recipe).
    ``hidden=True`` also runs the grader's hidden and edge cases (nbgrader's hidden tests).
    """
    try:
        ex = get_exercise(exercise_id)
    except KeyError as err:
        raise CheckFailed(str(err.args[0])) from None
    head = f"Exercise {ex.id} ({ex.title})"
    more = (
        f'\nStuck? `hint("{ex.id}")` shows the recipe (from course_utils.checks import hint).'
        if ex.hint
        else ""
    )
    cases = ex.cases(hidden=hidden)
    kind = "public or hidden" if hidden else "public"
    for i, inputs in enumerate(cases, start=1):
        try:
            got = ex.run(obj, inputs)
        except NotImplementedError:
            raise CheckFailed(
                f"✗ {head}: not implemented yet. Replace `raise NotImplementedError()` "
                f"with your code, run that cell, then this one."
            ) from None
        except Exception as err:  # the student's code raised: show where, not our internals
            raise CheckFailed(
                f"✗ {head}: your code raised {type(err).__name__}: {err}"
                f"{_student_frame(err)}\n({kind} case {i} of {len(cases)}){more}"
            ) from None
        expected = ex.reference(inputs)
        try:
            ex.compare(got, expected, inputs)
        except AssertionError as err:
            raise CheckFailed(
                f"✗ {head}: {kind} case {i} of {len(cases)} differs from PyTorch.\n{err}{more}"
            ) from None
    extra = "" if hidden else " (the grader adds hidden ones)"
    print(f"✓ {head}: passed {len(cases)} {kind} cases{extra}.")
    return Passed()
