"""Grade one submission: ``grade_submission(path, assignment, limits) -> SubmissionResult``.

A pure function of its arguments (the submission file is only read), safe to map over a
process pool or a Dask cluster. Steps:

1. parse the notebook (unreadable → every exercise ``missing`` with the reason);
2. start a kernel under limits (``launcher.py``) in a fresh temporary directory holding a
   copy of the notebook, and run every code cell with a per-cell timeout; a cell that times
   out or kills the kernel is *poisoned*: the kernel is restarted and the notebook re-run
   without it, so only the exercise(s) that depend on that cell lose points;
3. per exercise, write the grading inputs (made here, in the grader) to a file, let
   ``kernel.run_exercise`` call the student's object on them, load the outputs back with
   ``torch.load(weights_only=True)`` and judge them here with ``reference`` + ``compare``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
import torch
from nbformat import NotebookNode

from ..exercise import Exercise
from ..notebooks import exercise_sections
from .assignment import load_assignment
from .kernel import seed_case
from .results import CaseResult, ExerciseResult, Limits, SubmissionResult, aggregate

__all__ = ["grade_submission", "grade_notebook_bytes", "student_id"]

KERNEL_NAME = "course-grader"
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "VIRTUAL_ENV")
_SUSPICIOUS = {
    "course_utils.grading": "imports the grader",
    "course_utils.specs": "imports the exercise specs (reference solutions)",
    "get_exercise": "looks up exercise specs",
    ".reference(": "calls a reference implementation",
    "_REGISTRY": "touches the exercise registry",
    "import builtins": "patches builtins",
    "sys.modules": "patches sys.modules",
    "setrlimit": "changes resource limits",
    "os.kill": "sends signals",
}


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


def _flags(nb: NotebookNode) -> list[str]:
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for needle, what in _SUSPICIOUS.items():
            if needle in cell.source:
                out.append(f"{_cell_name(nb, i)} {what} (`{needle}`)")
    return out[:20]


# ---- grading inputs and expected values (made in the grader, cached per process) ------------

_PREPARED: dict[tuple[str, str], tuple[bytes, list[Any], int]] = {}


def _prepare(assignment: str, ex: Exercise) -> tuple[bytes, list[Any], int]:
    """``(serialized inputs, expected outputs, number of public cases)`` for one exercise."""
    key = (assignment, ex.id)
    if key not in _PREPARED:
        seed_case(-1)
        cases = ex.cases(hidden=True)
        buf = io.BytesIO()
        torch.save(cases, buf)
        expected = []
        for i, inputs in enumerate(torch.load(io.BytesIO(buf.getvalue()), weights_only=True)):
            seed_case(i)
            expected.append(ex.reference(inputs))
        _PREPARED[key] = (buf.getvalue(), expected, len(ex.public_seeds))
    return _PREPARED[key]


# ---- the kernel session ----------------------------------------------------------------------


def _kernel_env(work: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    home = work / "home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(home / "tmp"),
        IPYTHONDIR=str(home / ".ipython"),
        MPLCONFIGDIR=str(home / ".matplotlib"),
        MPLBACKEND="Agg",
        COURSE_CACHE_DIR=str(work / "cache"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        TQDM_DISABLE="1",
    )
    return env


def _copy_model_cache(work: Path) -> None:
    """A private copy of the pretrained-model cache: student writes never reach the real one."""
    dst = work / "cache"
    dst.mkdir(parents=True, exist_ok=True)
    try:
        from ..training import cache_dir

        src = cache_dir()
    except Exception:
        return
    if src.is_dir():
        for f in src.glob("*.pt"):
            if f.is_file() and f.stat().st_size < 200 * 2**20:
                shutil.copy2(f, dst / f.name)


def _write_kernelspec(work: Path, limits: Limits) -> Path:
    kdir = work / "kernels" / KERNEL_NAME
    kdir.mkdir(parents=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "course_utils.grading.launcher",
            "--memory-mb",
            str(limits.memory_mb),
            "--file-mb",
            str(max(4 * limits.max_output_mb, 256)),
            "--",
            "-f",
            "{connection_file}",
        ],
        "display_name": "course grader",
        "language": "python",
    }
    (kdir / "kernel.json").write_text(json.dumps(spec))
    return kdir.parent


class _Session:
    """One submission's kernel(s): run the notebook, skip poisoned cells, run the tests."""

    def __init__(self, nb: NotebookNode, work: Path, limits: Limits, deadline: float) -> None:
        self.nb, self.work, self.limits, self.deadline = nb, work, limits, deadline
        self.code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        self.sections = exercise_sections(nb)
        self.poisoned: dict[int, str] = {}
        self.cell_errors: dict[int, str] = {}
        self.restarts = 0
        self.out_of_time = False
        self.gave_up = ""
        self.client: Any = None
        self.kernel_dirs = _write_kernelspec(work, limits)
        self.env = _kernel_env(work)
        self.runs = 0

    # -- kernel lifetime
    def _start(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager

        from .client import GradingClient

        ksm = KernelSpecManager(kernel_dirs=[str(self.kernel_dirs)])
        km = AsyncKernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=ksm,
            connection_file=str(self.work / f"connection-{self.runs}.json"),
            transport="ipc",  # unix sockets in the temp dir: no TCP port is opened
            ip=str(self.work / f"ipc-{self.runs}"),
        )
        self.runs += 1
        scratch = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
        self.client = GradingClient(
            scratch,
            km=km,
            timeout=int(self.limits.cell_timeout),
            startup_timeout=int(self.limits.startup_timeout),
            allow_errors=True,
            interrupt_on_timeout=False,
            shutdown_kernel="immediate",
            iopub_timeout=4,
            record_timing=False,
            store_widget_state=False,
        )
        with open(self.work / "kernel.log", "ab") as log:  # the kernel's own stdout/stderr
            self.client.start_new_kernel(
                cwd=str(self.work / "run"), env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        self.client.start_new_kernel_client()

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client._cleanup_kernel()
            except Exception:
                pass
            self.client = None

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _exec(self, source: str, timeout: float) -> tuple[str, dict | None]:
        """``("ok", error-or-None)``, ``("timeout", None)`` or ``("crashed", None)``."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        cell = nbformat.v4.new_code_cell(source)
        self.client.timeout = max(1, int(math.ceil(timeout)))
        try:
            self.client.execute_cell(cell, 0, store_history=False)
        except CellTimeoutError:
            return "timeout", None
        except DeadKernelError:
            return "crashed", None
        except RuntimeError as err:  # e.g. "Kernel didn't respond" / channel closed
            return "crashed", {"ename": "RuntimeError", "evalue": str(err)}
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        return "ok", (errors[0] if errors else None)

    # -- step 2: the notebook
    def run_notebook(self) -> bool:
        """Run all non-poisoned cells in a new kernel; True when the kernel is alive afterwards."""
        while True:
            self.stop()
            try:
                self._start()
            except Exception as err:
                self.gave_up = f"the kernel did not start ({type(err).__name__}: {str(err)[:200]})"
                self.stop()
                return False
            self.cell_errors.clear()
            died = False
            for idx, cell in self.code:
                if idx in self.poisoned:
                    continue
                remaining = self._remaining()
                if remaining <= 0:
                    self.out_of_time = True
                    return False
                outcome, err = self._exec(cell.source, min(self.limits.cell_timeout, remaining))
                if outcome == "ok":
                    if err is not None:
                        self.cell_errors[idx] = (
                            f"{err.get('ename', 'Error')}: {str(err.get('evalue', ''))[:300]}"
                        )
                    continue
                if outcome == "timeout" and self._remaining() <= 0.5:
                    self.out_of_time = True
                    self.stop()
                    return False
                self.poisoned[idx] = outcome
                died = True
                break
            if not died:
                return True
            self.stop()
            if self.restarts >= self.limits.max_restarts:
                self.gave_up = f"the kernel died or hung {self.restarts + 1} times; grading stopped there"
                return False
            self.restarts += 1

    # -- step 3: the tests of one exercise
    def run_tests(self, assignment: str, ex: Exercise, res: ExerciseResult) -> str:
        """Run ``ex`` on the grading inputs in the kernel; fill ``res.cases``. Returns the outcome."""
        inputs_bytes, expected, n_public = _prepare(assignment, ex)
        tdir = self.work / "grading" / ex.id
        tdir.mkdir(parents=True, exist_ok=True)
        for f in tdir.glob("*"):
            f.unlink()
        inputs_path, out_dir = tdir / "inputs.pt", tdir / "out"
        inputs_path.write_bytes(inputs_bytes)
        source = (
            "__import__('course_utils.grading.kernel', fromlist=['run_exercise']).run_exercise("
            f"{assignment!r}, {ex.id!r}, {str(inputs_path)!r}, {str(out_dir)!r}, globals())"
        )
        remaining = self._remaining()
        if remaining <= 0:
            self.out_of_time = True
            res.status = "timeout"
            res.message = "The submission's time limit ran out before this exercise was tested."
            return "timeout"
        outcome, err = self._exec(source, min(self.limits.cell_timeout, remaining))
        inputs = torch.load(io.BytesIO(inputs_bytes), weights_only=True)
        missing = out_dir / "missing.pt"
        if missing.exists():
            rec = self._load(missing)
            if isinstance(rec, dict) and "shadowed" in rec:
                res.status = "error"
                res.message = (
                    f"`{ex.target}` at the end of your notebook is `{str(rec['shadowed'])[:120]}`, not the "
                    f"code you wrote: a later import or assignment replaced it. Rename that import."
                )
            else:
                res.status = "missing"
            return outcome
        stopped = False
        for i, (inp, exp) in enumerate(zip(inputs, expected)):
            hidden = i >= n_public
            index = i - n_public + 1 if hidden else i + 1
            path = out_dir / f"{i}.pt"
            if path.exists():
                rec = self._load(path)
                case = self._judge(ex, rec, copy.deepcopy(exp), inp, hidden, index, self.limits.memory_mb)
            elif outcome in ("timeout", "crashed"):
                what = "took too long" if outcome == "timeout" else "crashed the kernel"
                msg = f"not run: an earlier case {what}" if stopped else f"your code {what}"
                if outcome == "timeout" and not stopped:
                    msg += f" (limit {self.limits.cell_timeout:.0f} s for all cases of this exercise)"
                case = CaseResult(index, hidden, outcome, msg)
                stopped = True
            else:
                reason = f"{err.get('ename')}: {str(err.get('evalue'))[:300]}" if err else "no output"
                case = CaseResult(index, hidden, "error", f"the grader could not run your code ({reason})")
            res.cases.append(case)
        return outcome

    def _load(self, path: Path) -> Any:
        size = path.stat().st_size
        if size > self.limits.max_output_mb * 2**20:
            return {"ok": False, "kind": "too_big", "message": f"{size / 2**20:.0f} MiB"}
        try:
            return torch.load(path, weights_only=True)
        except Exception as err:
            return {"ok": False, "kind": "unloadable", "message": str(err)[:2000]}

    @staticmethod
    def _judge(
        ex: Exercise, rec: Any, expected: Any, inputs: dict, hidden: bool, index: int, limits_mb: int = 0
    ) -> CaseResult:
        seconds = float(rec.get("seconds", 0.0)) if isinstance(rec, dict) else 0.0
        if not isinstance(rec, dict) or ("ok" not in rec):
            return CaseResult(index, hidden, "error", "the output file was not written by the grader")
        if rec["ok"] is True and "value" in rec:
            try:
                ex.compare(rec["value"], expected, inputs)
            except AssertionError as err:
                return CaseResult(index, hidden, "failed", str(err)[:2000], seconds)
            except Exception as err:
                return CaseResult(index, hidden, "failed", f"{type(err).__name__}: {err}"[:2000], seconds)
            return CaseResult(index, hidden, "passed", "", seconds)
        kind = rec.get("kind")
        if kind == "not_implemented":
            msg = "not implemented yet (`raise NotImplementedError()` is still there)"
        elif kind == "raised":
            where = f" {rec.get('where', '')}" if rec.get("where") else ""
            msg = f"your code raised {rec.get('type', 'an exception')}"
            if rec.get("type") == "MemoryError" or "can't allocate memory" in str(rec.get("message", "")):
                msg += f" (the memory limit is {limits_mb} MiB)"
            msg += (
                f":{where}"
                if hidden
                else f": {str(rec.get('message', ''))[:500]}" + (f"\n  {where}" if where else "")
            )
        elif kind == "unserializable":
            msg = f"your result cannot be sent back to the grader ({rec.get('type')}: {rec.get('message')})"
        elif kind == "too_big":
            msg = f"your result is too large to grade ({rec.get('message')})"
        elif kind == "unloadable":
            msg = "your result contains something other than tensors, numbers, strings, lists or dicts"
            m = re.search(r"GLOBAL ([\w.]+)", str(rec.get("message", "")))
            msg += f" (found {m.group(1)})" if m else ""
        else:
            msg = "the output file was not written by the grader"
        return CaseResult(index, hidden, "error", msg, seconds)


# ---- the pure per-submission function ----------------------------------------------------------


def _summary(ex: Exercise, res: ExerciseResult, session: _Session | None) -> None:
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


def grade_notebook_bytes(
    student: str, data: bytes, assignment: str, limits: Limits | None = None
) -> SubmissionResult:
    """Grade the notebook ``data`` of ``student`` (the pure function mapped by pools and Dask)."""
    limits = limits or Limits()
    t0 = time.monotonic()
    name, exercises = load_assignment(assignment)
    results = [ExerciseResult(e.id, e.title, float(e.points)) for e in exercises]
    out = SubmissionResult(student, name, results)
    try:
        nb = _parse(data)
    except _BadNotebook as err:
        for r in results:
            r.status, r.message = "missing", f"Your submission could not be read: {err}. Nothing was graded."
        out.notes.append(f"Unreadable submission: {err}.")
        out.seconds = round(time.monotonic() - t0, 2)
        return out
    out.flags = _flags(nb)
    session: _Session | None = None
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        work = Path(tmp)
        try:
            (work / "run").mkdir()
            (work / "run" / "submission.ipynb").write_bytes(data)  # a copy; the original is never touched
            _copy_model_cache(work)
            session = _Session(nb, work, limits, t0 + limits.submission_timeout)
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
                    r.status, r.message = "error", f"Internal grader error ({type(err).__name__}: {err})."
            out.notes.append(f"Internal grader error: {type(err).__name__}: {str(err)[:300]}")
        finally:
            if session is not None:
                session.stop()
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


def grade_submission(path: str | Path, assignment: str, limits: Limits | None = None) -> SubmissionResult:
    """Grade one submitted notebook file; never raises for anything the student did."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        name, exercises = load_assignment(assignment)
        res = [ExerciseResult(e.id, e.title, float(e.points), "missing") for e in exercises]
        for r in res:
            r.message = f"Your submission could not be read ({err.strerror}). Nothing was graded."
        return SubmissionResult(student_id(path), name, res, notes=[f"Unreadable file: {err.strerror}"])
    return grade_notebook_bytes(student_id(path), data, assignment, limits)
