"""The safe automated grader: ``python -m course_utils grade ASSIGNMENT PATH... --out DIR``.

- ``runner.grade_submission(path, assignment, limits, sandbox="bwrap"|"auto"|"none")`` is the
  pure per-submission function;
- ``session`` runs one submission's kernel(s) inside the sandbox (``sandbox``: bubblewrap, a
  cgroup, a private writable box); ``kernelpkg`` builds the kernel-side ``course_utils``
  (no specs, no grader); ``kernel`` is the harness sent as source into the kernel;
- ``batch`` holds what is made once per worker (inputs, expected values, the judge);
  ``judge`` loads and compares results in a separate bounded process; ``safefs`` reads and
  writes the box without following links; ``flags`` reads the syntax tree for the instructor;
- ``report`` writes ``grades.csv``, ``<student>/results.json`` (Gradescope) and
  ``<student>/feedback.html`` atomically; ``cluster`` maps the same function on Dask.

See ``docs/GRADING.md`` for the instructor guide and the threat model.
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
