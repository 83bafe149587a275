"""Map the per-submission function over a local process pool or a Dask cluster.

Both yield one ``SubmissionResult`` per submission as they finish. A worker that dies
(e.g. killed by a student's code, which runs under the same user) never stops the batch:
with the local pool, the submissions of a broken pool are re-graded one by one in fresh
processes, and one that breaks its own process again gets ``crashed`` on every exercise.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .results import ExerciseResult, Limits, SubmissionResult

__all__ = ["map_local", "map_dask", "worker_died_result"]

Item = tuple[str, Path]  # (student id, notebook path)


def worker_died_result(student: str, assignment: str, why: str, status: str = "crashed") -> SubmissionResult:
    """Every exercise ``crashed`` (the process grading this submission died) or ``error``."""
    from .assignment import load_assignment

    name, exercises = load_assignment(assignment)
    msg = f"Not graded: {why}."
    res = [ExerciseResult(e.id, e.title, float(e.points), status, 0.0, msg) for e in exercises]
    return SubmissionResult(student, name, res, notes=[msg])


def _grade_path(path: str, assignment: str, limits: Limits, student: str) -> SubmissionResult:
    from .runner import grade_submission

    try:
        return grade_submission(path, assignment, limits, student=student)
    except Exception as err:  # a grader bug: this student's error row, never the batch
        why = f"internal grader error ({type(err).__name__}: {str(err)[:200]})"
        return worker_died_result(student, assignment, why, "error")


def map_local(items: list[Item], assignment: str, limits: Limits, jobs: int) -> Iterator[SubmissionResult]:
    """Grade ``items`` with ``jobs`` worker processes (spawned: no forked torch state)."""
    ctx = multiprocessing.get_context("spawn")
    broken: list[Item] = []
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx) as pool:
        futures = {pool.submit(_grade_path, str(p), assignment, limits, s): (s, p) for s, p in items}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                broken.append(futures[fut])
            except Exception as err:  # pragma: no cover - grade_* never raise for student input
                s, _ = futures[fut]
                yield worker_died_result(
                    s, assignment, f"internal grader error ({type(err).__name__}: {err})"
                )
    for s, p in broken:  # isolate: find the one that kills its worker
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            try:
                yield pool.submit(_grade_path, str(p), assignment, limits, s).result()
            except BrokenProcessPool:
                yield worker_died_result(s, assignment, "the grading process was killed while running it")


def _read_capped(p: Path) -> bytes:
    """The submission's bytes (an oversized one is replaced by as many bytes + 1 as the cap: error row)."""
    from . import safefs
    from .runner import MAX_NOTEBOOK_MB

    cap = MAX_NOTEBOOK_MB * 2**20
    try:
        return safefs.read_regular(p.parent, p.name, cap)
    except OSError:
        return b"x" * (cap + 1) if p.is_file() and p.stat().st_size > cap else b""


def map_dask(items: list[Item], assignment: str, limits: Limits, address: str) -> Iterator[SubmissionResult]:
    """Grade ``items`` on the Dask scheduler at ``address``; notebooks are shipped as bytes.

    Workers need the same environment (course_utils, torch, ipykernel); a spec-file
    assignment must exist at the same path on the workers.
    """
    from distributed import Client, as_completed

    from .runner import grade_notebook_bytes

    with Client(address, timeout="20s") as client:
        run = uuid.uuid4().hex[:8]
        futures = {}
        for s, p in items:
            fut = client.submit(
                grade_notebook_bytes,
                s,
                _read_capped(p),
                assignment,
                limits,
                key=f"grade-{run}-{s}",
                pure=False,
            )
            futures[fut] = s
        for fut in as_completed(list(futures)):
            try:
                yield fut.result()
            except Exception as err:
                yield worker_died_result(
                    futures[fut], assignment, f"the Dask task failed ({type(err).__name__})"
                )
