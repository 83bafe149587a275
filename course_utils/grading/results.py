"""Plain result records of the grader and how case outcomes become a score and a status.

Scoring rule (documented in docs/GRADING.md): **partial credit per case**. An exercise worth
``P`` points tested on ``n`` cases scores ``round(P * passed / n, 2)``. Its status is
``passed`` when every case passed, otherwise the most severe case status, in the order
``crashed > timeout > error > failed``; ``missing`` when the target was never defined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["STATUSES", "Limits", "CaseResult", "ExerciseResult", "SubmissionResult", "aggregate"]

STATUSES = ("passed", "failed", "error", "timeout", "crashed", "missing")
_SEVERITY = {"failed": 1, "error": 2, "timeout": 3, "crashed": 4}


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission (seconds, MiB)."""

    cell_timeout: float = 120.0  # one notebook cell, and the hidden tests of one exercise
    submission_timeout: float = 900.0  # wall clock for the whole submission
    memory_mb: int = 2048  # RLIMIT_DATA of the kernel; its cgroup (all processes, shared mmap) + 1 GiB
    max_output_mb: int = 64  # largest serialized output of one case the grader will load
    max_restarts: int = 6  # kernel restarts per submission after a timeout or a crash
    startup_timeout: float = 120.0  # kernel start
    sandbox: str = "bwrap"  # "bwrap" (refuse without it), "auto" (bwrap when it starts), "none"
    disk_mb: int = 1024  # the writable box (a tmpfs of this size when the grader runs as root)
    max_processes: int = 256  # pids in the sandbox's cgroup (threads count)


@dataclass
class CaseResult:
    """One test case: ``index`` counts from 1 within public or hidden cases."""

    index: int
    hidden: bool
    status: str
    message: str = ""
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{'hidden' if self.hidden else 'public'} case {self.index}"


@dataclass
class ExerciseResult:
    """The grade of one exercise in one submission."""

    id: str
    title: str
    max_score: float
    status: str = "missing"
    score: float = 0.0
    message: str = ""  # the summary shown to the student
    cases: list[CaseResult] = field(default_factory=list)


@dataclass
class SubmissionResult:
    """Everything the grader decided about one submission (plain data, picklable)."""

    student: str
    assignment: str
    exercises: list[ExerciseResult]
    notes: list[str] = field(default_factory=list)  # notebook-level events (skipped cells, ...)
    flags: list[str] = field(default_factory=list)  # for the instructor, never scored
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return round(sum(e.score for e in self.exercises), 2)

    @property
    def max_score(self) -> float:
        return round(sum(e.max_score for e in self.exercises), 2)

    def to_dict(self) -> dict:
        return asdict(self)


def aggregate(ex: ExerciseResult) -> ExerciseResult:
    """Set ``ex.score`` and ``ex.status`` from its cases (partial credit per case)."""
    if not ex.cases:
        ex.score = 0.0
        return ex
    n_pass = sum(c.status == "passed" for c in ex.cases)
    ex.score = round(ex.max_score * n_pass / len(ex.cases), 2)
    bad = [c for c in ex.cases if c.status != "passed"]
    ex.status = "passed" if not bad else max(bad, key=lambda c: _SEVERITY.get(c.status, 0)).status
    return ex
