"""Per-process grading state, made once per batch and shared by every submission a worker grades.

Independent of the student: the inputs and expected values of each exercise (``reference`` runs
here, in the grader), the ``run`` half serialized by value, the pretrained-model cache snapshot
copied into each box, and the judge process (``judge.py``).
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from ..exercise import Exercise
from .judge import Judge
from .kernel import seed_case
from .kernelpkg import pickled_run, remove_at_exit

__all__ = ["BATCH", "Batch", "Prepared", "judge_prefix"]


class Prepared:
    """One exercise's grading material: inputs (to the kernel), ``run`` (to the kernel),
    expected values + inputs (to the judge only)."""

    def __init__(self, ex: Exercise) -> None:
        seed_case(-1)
        cases = ex.cases(hidden=True)
        buf = io.BytesIO()
        torch.save(cases, buf)
        self.inputs_bytes = buf.getvalue()
        inputs = torch.load(io.BytesIO(self.inputs_bytes), weights_only=True)
        expected = []
        for i, inp in enumerate(inputs):
            seed_case(i)
            expected.append(ex.reference(inp))
        judge_buf = io.BytesIO()
        torch.save((expected, torch.load(io.BytesIO(self.inputs_bytes), weights_only=True)), judge_buf)
        self.judge_payload = judge_buf.getvalue()
        self.n_cases = len(inputs)
        self.n_public = len(ex.public_seeds)
        self.run_bytes = pickled_run(ex)


class Batch:
    """What every submission graded by this process shares (built once, on first use)."""

    def __init__(self) -> None:
        self.prepared: dict[tuple[str, str], Prepared] = {}
        self.judges: dict[tuple[int, bool, str], Judge] = {}
        self.cache_snapshot: Path | None = None

    def prepare(self, assignment: str, ex: Exercise) -> Prepared:
        key = (assignment, ex.id)
        if key not in self.prepared:
            self.prepared[key] = Prepared(ex)
        return self.prepared[key]

    def judge(self, memory_mb: int, sandboxed: bool, assignment: str) -> Judge:
        key = (memory_mb, sandboxed, assignment)
        if key not in self.judges:
            prefix: list[str] = []
            if sandboxed:
                import course_utils

                src = Path(course_utils.__file__).resolve().parents[1]
                ro = [src] + ([Path(assignment).resolve().parent] if assignment.endswith(".py") else [])
                prefix = judge_prefix(ro)
            self.judges[key] = Judge(memory_mb, prefix)
        return self.judges[key]

    def model_cache(self) -> Path | None:
        """A snapshot of the pretrained-model cache (copied into each box; never the real one)."""
        if self.cache_snapshot is None:
            snap = Path(tempfile.mkdtemp(prefix="course-cache-"))
            remove_at_exit(snap)
            try:
                from ..training import cache_dir

                src = cache_dir()
                if src.is_dir():
                    for f in src.glob("*.pt"):
                        if f.is_file() and not f.is_symlink() and f.stat().st_size < 200 * 2**20:
                            shutil.copy2(f, snap / f.name)
            except Exception:
                pass
            self.cache_snapshot = snap
        return self.cache_snapshot


BATCH = Batch()


def judge_prefix(ro: list[Path]) -> list[str]:
    """bwrap for the judge: the whole file system read-only, no network, an empty /tmp."""
    exe = shutil.which("bwrap") or "bwrap"
    args = [exe, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    args += ["--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    args += ["--tmpfs", "/tmp"]
    for p in {Path(sys.prefix), Path(sys.prefix).resolve(), *ro}:
        if str(p).startswith("/tmp/") and p.exists():
            args += ["--ro-bind", str(p), str(p)]
    return [*args, "--"]
