"""The safe automated grader: ``python -m course_utils grade ASSIGNMENT PATH... --out DIR``.

- ``runner.grade_submission(path, assignment, limits)`` is the pure per-submission function
  (one Jupyter kernel per submission, limits, restarts that skip poisoned cells);
- ``kernel.run_exercise`` is the only grader code that runs inside the student's kernel;
- ``report`` writes ``grades.csv``, ``<student>/results.json`` (Gradescope) and
  ``<student>/feedback.html`` atomically; ``cluster`` maps the same function on Dask.

See ``docs/GRADING.md`` for the instructor guide and the safety model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Limits", "SubmissionResult", "grade_submission"]


def __getattr__(name: str) -> Any:  # lazy: the kernel launcher imports this package without torch
    if name == "grade_submission":
        from .runner import grade_submission

        return grade_submission
    if name in ("Limits", "SubmissionResult"):
        from . import results

        return getattr(results, name)
    raise AttributeError(name)
