"""One submission's kernel(s) in the sandbox: run the notebook, skip poisoned cells, run the tests.

The kernel is started by jupyter_client from a kernel spec whose command is
``sh -c 'echo $$ > cgroup.procs; exec bwrap ... python -m course_utils.grading.launcher'``: the
shell joins the submission's cgroup, bubblewrap builds the sandbox (``sandbox.py``), the launcher
sets the rlimits and starts ipykernel. Tests write the inputs and the ``run`` pickle into a fresh
folder of the box, execute the harness (``kernel.py``) as a cell, read each result file safely
(``safefs.py``) and have the judge (``judge.py``) decide.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..exercise import Exercise
from ..notebooks import exercise_sections
from . import safefs, sandbox
from .batch import BATCH
from .judge import clean_text
from .kernel import harness_cell
from .kernelpkg import kernel_package
from .results import CaseResult, ExerciseResult, Limits

__all__ = ["KERNEL_NAME", "Session", "kernel_env"]

KERNEL_NAME = "course-grader"


def kernel_env(box: Path, sandboxed: bool) -> dict[str, str]:
    """The kernel's whole environment: an allowlist, nothing of the grader's."""
    home = box / "home"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": "/tmp" if sandboxed else str(home / "tmp"),
        "IPYTHONDIR": str(home / ".ipython"),
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "MPLBACKEND": "Agg",
        "COURSE_CACHE_DIR": str(box / "cache"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "TQDM_DISABLE": "1",
    }
    if sandboxed:
        env["PYTHONPATH"] = str(kernel_package())
    else:  # no sandbox: the kernel-side package still hides the specs from a plain import
        env["PYTHONPATH"] = str(kernel_package())
        for k in ("LD_LIBRARY_PATH", "VIRTUAL_ENV"):
            if k in os.environ:
                env[k] = os.environ[k]
    return env


class Session:
    """One submission's kernel(s): run the notebook, skip poisoned cells, run the tests."""

    def __init__(
        self, nb: NotebookNode, work: Path, limits: Limits, deadline: float, sandboxed: bool, assignment: str
    ) -> None:
        self.nb, self.work, self.limits, self.deadline = nb, work, limits, deadline
        self.sandboxed, self.assignment = sandboxed, assignment
        self.code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        self.sections = exercise_sections(nb)
        self.poisoned: dict[int, str] = {}
        self.cell_errors: dict[int, str] = {}
        self.restarts = 0
        self.out_of_time = False
        self.gave_up = ""
        self.client: Any = None
        self.cgroup: sandbox.Cgroup | None = None
        self.box = work / "box"
        self.conn = work / "conn"
        self.conn.mkdir()
        self.kernel_dirs = work / "kernels"
        self.env = kernel_env(self.box, sandboxed)
        self.runs = 0
        self.tests = 0

    def _write_kernelspec(self) -> None:
        launcher = [
            sys.executable,
            "-m",
            "course_utils.grading.launcher",
            "--memory-mb",
            str(self.limits.memory_mb),
            "--file-mb",
            str(max(4 * self.limits.max_output_mb, 256)),
            "--",
            "-f",
            "{connection_file}",
        ]
        argv = launcher
        if self.sandboxed:
            self.cgroup = sandbox.Cgroup(self.limits.memory_mb + 1024, pids=self.limits.max_processes)
            bw = sandbox.bwrap_argv(
                self.box,
                self.env,
                ro=[self.conn, kernel_package()],
                chdir=self.box / "run",
                tmp_mb=self.limits.disk_mb,
            )
            join = "; ".join(f"echo $$ > {p}" for p in self.cgroup.procs_files)
            argv = ["/bin/sh", "-c", f'{join + "; " if join else ""}exec "$@"', "sh", *bw, *launcher]
        kdir = self.kernel_dirs / KERNEL_NAME
        kdir.mkdir(parents=True, exist_ok=True)
        spec = {"argv": argv, "display_name": "course grader", "language": "python"}
        (kdir / "kernel.json").write_text(json.dumps(spec))

    # -- kernel lifetime
    def _start(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager

        from .client import GradingClient

        self._write_kernelspec()
        ksm = KernelSpecManager(kernel_dirs=[str(self.kernel_dirs)])
        km = AsyncKernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=ksm,
            connection_file=str(self.conn / f"connection-{self.runs}.json"),
            transport="ipc",  # unix sockets in the box: no TCP port is opened
            ip=str(self.box / f"ipc-{self.runs}"),
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
                cwd=str(self.box / "run"), env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        self.client.start_new_kernel_client()

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client._cleanup_kernel()
            except Exception:
                pass
            self.client = None
        if self.cgroup is not None:  # everything the kernel started, in whatever session
            self.cgroup.close()
            self.cgroup = None

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
        prep = BATCH.prepare(assignment, ex)
        self.tests += 1
        rel = f"t{self.tests}"  # a fresh folder per run: nothing the student prepared is reused
        safefs.write_new(self.box, f"{rel}/inputs.pt", prep.inputs_bytes)
        safefs.write_new(self.box, f"{rel}/run.pkl", prep.run_bytes)
        safefs.make_dirs(self.box, f"{rel}/out")
        t = self.box / rel
        source = harness_cell(ex.target, str(t / "run.pkl"), str(t / "inputs.pt"), str(t / "out"))
        remaining = self._remaining()
        if remaining <= 0:
            self.out_of_time = True
            res.status = "timeout"
            res.message = "The submission's time limit ran out before this exercise was tested."
            return "timeout"
        budget = ex.timeout * prep.n_cases if ex.timeout else self.limits.cell_timeout
        outcome, err = self._exec(source, min(budget, remaining))
        cap = self.limits.max_output_mb * 2**20
        if safefs.exists(self.box, f"{rel}/out/missing.pt"):
            rec = self._record(f"{rel}/out/missing.pt", cap)
            if isinstance(rec, dict) and "shadowed" in rec:
                res.status = "error"
                res.message = (
                    f"`{ex.target}` at the end of your notebook is `{clean_text(rec['shadowed'], 120)}`, not "
                    f"the code you wrote: a later import or assignment replaced it. Rename that import."
                )
            else:
                res.status = "missing"
            return outcome
        judge = BATCH.judge(self.limits.memory_mb, self.sandboxed, assignment)
        key = f"{assignment}::{ex.id}"
        per_case = ex.timeout or self.limits.cell_timeout
        stopped = False
        for i in range(prep.n_cases):
            hidden = i >= prep.n_public
            index = i - prep.n_public + 1 if hidden else i + 1
            case_rel = f"{rel}/out/{i}.pt"
            if safefs.exists(self.box, case_rel):
                try:
                    data = safefs.read_regular(self.box, case_rel, cap)
                except OSError as why:
                    too_big = "limit" in str(why) or "grew" in str(why)
                    msg = (
                        f"your result is too large to grade (limit {self.limits.max_output_mb} MiB)"
                        if too_big
                        else "the output file was not written by the grader (not a regular file)"
                    )
                    res.cases.append(CaseResult(index, hidden, "error", msg))
                    continue
                fields = judge.judge(
                    key, assignment, ex.id, prep.judge_payload, i, data, hidden, index, per_case
                )
                res.cases.append(CaseResult(**fields))
            elif outcome in ("timeout", "crashed"):
                what = "took too long" if outcome == "timeout" else "crashed the kernel"
                msg = f"not run: an earlier case {what}" if stopped else f"your code {what}"
                if outcome == "timeout" and not stopped:
                    msg += f" (limit {budget:.0f} s for all cases of this exercise)"
                res.cases.append(CaseResult(index, hidden, outcome, msg))
                stopped = True
            else:
                reason = f"{err.get('ename')}: {clean_text(err.get('evalue'), 300)}" if err else "no output"
                res.cases.append(
                    CaseResult(index, hidden, "error", f"the grader could not run your code ({reason})")
                )
        return outcome

    def _record(self, rel: str, cap: int) -> Any:
        """A small grader record (missing/shadowed) read safely; None when unreadable."""
        from .judge import load_result

        try:
            return load_result(safefs.read_regular(self.box, rel, min(cap, 2**20)))
        except OSError:
            return None
