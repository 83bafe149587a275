"""Grade one submission: ``grade_submission(path, assignment, limits) -> SubmissionResult``.

A pure function of its arguments (the submission file is only read), safe to map over a
process pool or a Dask cluster. Steps:

1. parse the notebook (unreadable → every exercise ``missing`` with the reason);
2. start a kernel in its own sandbox (``sandbox.py``: bubblewrap namespaces, a cgroup, one
   writable *box* holding a copy of the notebook) under limits (``launcher.py``), and run every
   code cell with a per-cell timeout; a cell that times out or kills the kernel is *poisoned*:
   the kernel is restarted and the notebook re-run without it, so only the exercise(s) that
   depend on that cell lose points;
3. per exercise, write the grading inputs and the ``run`` half of the spec (made here, in the
   grader) into the box, execute the harness (``kernel.py``, sent as source) on the student's
   object, read the outputs back without following links (``safefs.py``) and judge them in the
   separate bounded judge process (``judge.py``) against ``reference`` values computed here.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from ..exercise import Exercise
from ..notebooks import exercise_sections
from . import safefs, sandbox
from .assignment import load_assignment
from .batch import BATCH
from .flags import exercise_flags, notebook_flags
from .judge import clean_text
from .results import ExerciseResult, Limits, SubmissionResult, aggregate
from .session import Session

__all__ = ["grade_submission", "grade_notebook_bytes", "student_id", "MAX_NOTEBOOK_MB"]

MAX_NOTEBOOK_MB = 20  # larger submissions get an error row without a kernel


class _BadNotebook(ValueError):
    pass


def student_id(path: str | Path) -> str:
    """The student id of a submission: its file name without the extension."""
    return Path(path).stem


# ---- reading the submission ------------------------------------------------------------


def _parse(data: bytes) -> NotebookNode:
    """The notebook in ``data`` or ``_BadNotebook`` with a one-line reason."""
    if not data.strip():
        raise _BadNotebook("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadNotebook("the file is not UTF-8 text (is it really an .ipynb?)") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise _BadNotebook(f"the file is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise _BadNotebook("the file is JSON but not a Jupyter notebook (no list of cells)")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises many types for odd documents
        raise _BadNotebook(f"the notebook is malformed ({type(err).__name__}: {str(err)[:200]})") from None
    cells = []
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(str(s) for s in src)
        if not isinstance(src, str):
            continue
        cell["source"] = src
        cell.setdefault("metadata", {})
        cells.append(cell)
    nb.cells = cells
    if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        raise _BadNotebook("the notebook has no code cells")
    return nb


def _cell_name(nb: NotebookNode, idx: int) -> str:
    first = next((ln.strip() for ln in nb.cells[idx].source.splitlines() if ln.strip()), "")
    return f'cell {idx + 1} ("{first[:60]}")'


def _flags(nb: NotebookNode, exercises: list[Exercise], sections: dict[int, str]) -> list[str]:
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    out = notebook_flags([(_cell_name(nb, i), src) for i, src in code])
    for ex in exercises:
        cells = [(_cell_name(nb, i), src) for i, src in code if sections.get(i) == ex.id]
        out += exercise_flags(ex, cells)
    return [clean_text(f, 300) for f in out[:30]]


# ---- the pure per-submission function ----------------------------------------------------------


def _summary(ex: Exercise, res: ExerciseResult, session: Session | None) -> None:
    """Fill ``res.status``/``res.message`` for exercises whose target never ran."""
    if res.cases:
        aggregate(res)
        n_ok = sum(c.status == "passed" for c in res.cases)
        n = len(res.cases)
        res.message = f"All {n} cases passed." if n_ok == n else f"{n_ok} of {n} cases passed."
        return
    res.score = 0.0
    if res.status == "error" and res.message:  # shadowed target
        return
    if session is None:
        return
    section = [i for i, e in session.sections.items() if e == ex.id]
    poisoned = [i for i in section if i in session.poisoned]
    consequence = f"NameError: name '{ex.target}' is not defined"
    errors = [i for i in section if i in session.cell_errors and consequence not in session.cell_errors[i]]
    if poisoned:
        i = poisoned[0]
        res.status = session.poisoned[i]
        what = "took longer than the time limit" if res.status == "timeout" else "crashed the kernel"
        res.message = (
            f"{_cell_name(session.nb, i)} {what} and was skipped, so `{ex.target}` was never defined."
        )
    elif errors:
        i = errors[0]
        res.status = "error"
        res.message = (
            f"{_cell_name(session.nb, i)} raised {session.cell_errors[i]}, and `{ex.target}` is not defined."
        )
    else:
        res.status = "missing"
        res.message = (
            f"`{ex.target}` is not defined after running your notebook. Did you delete or rename it? "
            f"The grader calls a top-level `{ex.target}`."
        )


def _unreadable(out: SubmissionResult, why: str, status: str = "missing") -> SubmissionResult:
    for r in out.exercises:
        r.status, r.message = status, f"Your submission could not be graded: {why}. Nothing was graded."
    out.notes.append(f"Not graded: {why}.")
    return out


def grade_notebook_bytes(
    student: str, data: bytes, assignment: str, limits: Limits | None = None, sandbox_mode: str | None = None
) -> SubmissionResult:
    """Grade the notebook ``data`` of ``student`` (the pure function mapped by pools and Dask).

    ``sandbox_mode`` (default ``limits.sandbox``): ``"bwrap"`` (refuse without bubblewrap: every
    exercise ``error``), ``"auto"`` (bubblewrap when it can start, else unsandboxed, noted in
    ``notes``), ``"none"`` (unsandboxed). Never raises for anything the student did.
    """
    limits = limits or Limits()
    mode = sandbox_mode or limits.sandbox
    t0 = time.monotonic()
    name, exercises = load_assignment(assignment)
    results = [ExerciseResult(e.id, e.title, float(e.points)) for e in exercises]
    out = SubmissionResult(student, name, results)
    if len(data) > MAX_NOTEBOOK_MB * 2**20:
        return _unreadable(
            out,
            f"the notebook is {len(data) / 2**20:.0f} MB, over the {MAX_NOTEBOOK_MB} MB limit (clear outputs)",
            "error",
        )
    try:
        nb = _parse(data)
    except _BadNotebook as err:
        _unreadable(out, str(err))
        out.seconds = round(time.monotonic() - t0, 2)
        return out
    try:
        use_bwrap, note = sandbox.choose(mode)
    except sandbox.SandboxUnavailable as err:
        return _unreadable(out, f"the sandbox cannot start on the grading machine ({err})", "error")
    if not use_bwrap:
        out.notes.append(f"Grading note: {note}.")
    session: Session | None = None
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        work = Path(tmp)
        box = work / "box"
        box.mkdir()
        mounted = use_bwrap and sandbox.mount_box(box, limits.disk_mb)
        try:
            out.flags = _flags(nb, exercises, exercise_sections(nb))
            safefs.write_new(box, "run/submission.ipynb", data)  # a copy; the original is never touched
            safefs.make_dirs(box, "home/tmp")
            snap = BATCH.model_cache()
            for f in sorted(snap.glob("*.pt")) if snap else []:
                safefs.write_new(box, f"cache/{f.name}", f.read_bytes())
            safefs.make_dirs(box, "cache")
            session = Session(nb, work, limits, t0 + limits.submission_timeout, use_bwrap, name)
            alive = session.run_notebook()
            for ex, res in zip(exercises, results):
                if not alive:
                    if session.out_of_time:
                        res.status = "timeout"
                        res.message = (
                            f"The submission's time limit ({limits.submission_timeout:.0f} s) ran out "
                            "before this exercise was tested."
                        )
                    elif not session.poisoned and session.gave_up.startswith("the kernel did not start"):
                        res.status, res.message = "error", f"Not graded: {session.gave_up}."
                    else:
                        res.status, res.message = "crashed", f"Not graded: {session.gave_up}."
                    continue
                outcome = session.run_tests(name, ex, res)
                if outcome in ("timeout", "crashed") and ex is not exercises[-1]:
                    alive = session.run_notebook()  # a fresh kernel for the remaining exercises
        except Exception as err:  # a grader bug must not stop the batch or hide other scores
            for r in results:
                if not r.cases and r.status == "missing" and not r.message:
                    r.status, r.message = (
                        "error",
                        f"Internal grader error ({type(err).__name__}: {clean_text(err, 300)}).",
                    )
            out.notes.append(f"Internal grader error: {type(err).__name__}: {clean_text(err, 300)}")
        finally:
            if session is not None:
                session.stop()
            if mounted:
                sandbox.unmount_box(box)
        for ex, res in zip(exercises, results):
            if not res.message:
                _summary(ex, res, session)
        if session is not None:
            for i, st in sorted(session.poisoned.items()):
                what = "timed out" if st == "timeout" else "crashed the kernel"
                where = f"exercise {session.sections[i]}" if i in session.sections else "outside any exercise"
                out.notes.append(f"{_cell_name(nb, i)} ({where}) {what} and was skipped on re-run.")
            quiet = ("CheckFailed", "NotImplementedError")  # already reported per exercise
            errors = [(i, m) for i, m in sorted(session.cell_errors.items()) if not m.startswith(quiet)]
            for i, msg in errors[:20]:
                out.notes.append(f"{_cell_name(nb, i)} raised {msg.splitlines()[0] if msg else ''}")
    out.seconds = round(time.monotonic() - t0, 2)
    return out


def grade_submission(
    path: str | Path,
    assignment: str,
    limits: Limits | None = None,
    sandbox: str | None = None,
    student: str | None = None,
) -> SubmissionResult:
    """Grade one submitted notebook file; never raises for anything the student did.

    ``sandbox``: ``"auto"`` | ``"bwrap"`` | ``"none"`` (default ``limits.sandbox``, ``"bwrap"``);
    ``student``: the id to report (default: the file name without ``.ipynb``).
    """
    path = Path(path)
    sid = student or student_id(path)
    try:
        if path.stat().st_size > MAX_NOTEBOOK_MB * 2**20:
            data = b"x" * (MAX_NOTEBOOK_MB * 2**20 + 1)  # only its size matters: error row
        else:
            data = safefs.read_regular(path.parent, path.name, MAX_NOTEBOOK_MB * 2**20)
    except OSError as err:
        name, exercises = load_assignment(assignment)
        res = [ExerciseResult(e.id, e.title, float(e.points), "missing") for e in exercises]
        why = err.strerror or str(err)
        for r in res:
            r.message = f"Your submission could not be read ({why}). Nothing was graded."
        return SubmissionResult(sid, name, res, notes=[f"Unreadable file: {why}"])
    return grade_notebook_bytes(sid, data, assignment, limits, sandbox)
