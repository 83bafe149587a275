"""Which exercises an assignment holds: a course chapter, or an instructor's own spec file.

``ASSIGNMENT`` is a chapter number or slug (``3``, ``03_custom_pruning_methods``) whose specs
live in ``course_utils/specs/chNN.py``, or the path of a Python file that defines
``EXERCISES = [Exercise(...), ...]`` (custom assignments, and the grader's own tests).
The same string is resolved in the grader, in pool/Dask workers and inside the kernel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from ..exercise import Exercise, chapter_exercises, resolve_chapter

__all__ = ["AssignmentError", "load_assignment", "find_exercise"]

_FILE_SPECS: dict[str, list[Exercise]] = {}


class AssignmentError(ValueError):
    """The assignment name is unknown or it has no exercises (instructor misuse)."""


def _load_file(path: Path) -> list[Exercise]:
    key = str(path.resolve())
    if key not in _FILE_SPECS:
        name = "course_grading_spec_" + hashlib.sha1(key.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, key)
        if spec is None or spec.loader is None:
            raise AssignmentError(f"Cannot import the spec file {path}.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            raise AssignmentError(f"The spec file {path} raised {type(err).__name__}: {err}") from None
        exercises = list(getattr(module, "EXERCISES", []))
        if not all(isinstance(e, Exercise) for e in exercises):
            raise AssignmentError(f"{path}: EXERCISES must be a list of course_utils.exercise.Exercise.")
        _FILE_SPECS[key] = sorted(exercises, key=lambda e: tuple(int(p) for p in e.id.split(".")))
    return _FILE_SPECS[key]


def load_assignment(name: str | int) -> tuple[str, list[Exercise]]:
    """``(canonical name, exercises)``; raises ``AssignmentError`` with a one-line message."""
    s = str(name).strip()
    if s.endswith(".py"):
        path = Path(s)
        if not path.is_file():
            raise AssignmentError(f"Spec file {s} does not exist.")
        exercises = _load_file(path)
        canonical = str(path.resolve())
    else:
        try:
            canonical = resolve_chapter(s)
        except ValueError as err:
            raise AssignmentError(str(err)) from None
        exercises = chapter_exercises(canonical)
    if not exercises:
        raise AssignmentError(f"Assignment {canonical} has no exercises yet (no specs registered).")
    return canonical, exercises


def find_exercise(assignment: str, exercise_id: str) -> Exercise:
    """The exercise ``exercise_id`` of ``assignment`` (used inside the kernel)."""
    for ex in load_assignment(assignment)[1]:
        if ex.id == exercise_id:
            return ex
    raise AssignmentError(f"Assignment {assignment} has no exercise {exercise_id}.")
