"""Time the course itself for the bench report: every notebook top to bottom, and the grader."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GradingRow",
    "NotebookRow",
    "course_notebooks",
    "grading_chapters",
    "time_grading",
    "time_notebooks",
]


@dataclass
class NotebookRow:
    path: str
    seconds: float
    status: str


def course_notebooks(root: Path) -> list[Path]:
    """Lessons (``notebooks/``) then solutions (``solutions/``), each sorted by name."""
    return [p for folder in ("notebooks", "solutions") for p in sorted((root / folder).glob("*.ipynb"))]


def time_notebooks(paths: list[Path], root: Path, bar: Any) -> list[NotebookRow]:
    """Wall seconds to execute each notebook top to bottom in a fresh kernel (nothing is written)."""
    from .notebooks import execute_notebook

    rows = []
    for path in paths:
        bar.set_postfix_str(path.name)
        t0 = time.perf_counter()
        try:
            execute_notebook(path, timeout=600, write=False)
            status = "ok"
        except Exception as err:  # a failing notebook is reported, not fatal to the report
            first = str(err).strip().splitlines()[-1:] or [""]
            status = f"failed: {type(err).__name__} {first[0][:80]}".strip()
        rows.append(NotebookRow(str(path.relative_to(root)), time.perf_counter() - t0, status))
        bar.update()
    return rows


@dataclass
class GradingRow:
    chapter: str
    submissions: int
    seconds: float
    scores: dict[str, str]
    status: str

    @property
    def per_submission(self) -> float:
        return self.seconds / max(self.submissions, 1)


def grading_chapters(root: Path) -> list[str]:
    """Chapters with both a solution and a released exercise notebook."""
    return [
        p.stem for p in sorted((root / "solutions").glob("*.ipynb")) if (root / "exercises" / p.name).exists()
    ]


def time_grading(
    chapters: list[str],
    root: Path,
    bar: Any,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> list[GradingRow]:
    """Grade two submissions per chapter with the grader CLI, one at a time (``--jobs 1``): the
    solution (should score full marks) and the untouched exercise (should score 0)."""
    rows = []
    for chapter in chapters:
        bar.set_postfix_str(chapter)
        with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
            subs, out = Path(tmp) / "subs", Path(tmp) / "out"
            subs.mkdir()
            shutil.copy(root / "solutions" / f"{chapter}.ipynb", subs / "solution.ipynb")
            shutil.copy(root / "exercises" / f"{chapter}.ipynb", subs / "blank.ipynb")
            cmd = [sys.executable, "-m", "course_utils", "grade", chapter, str(subs), "--out", str(out)]
            t0 = time.perf_counter()
            proc = runner([*cmd, "--jobs", "1", "--quiet"], cwd=root, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            scores: dict[str, str] = {}
            if proc.returncode == 0 and (out / "grades.csv").exists():
                with (out / "grades.csv").open(newline="") as f:
                    scores = {r["student"]: f"{r['score']}/{r['max_score']}" for r in csv.DictReader(f)}
                status = "ok"
            else:
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or [""]
                status = f"grader exited {proc.returncode}: {tail[0][:100]}"
        rows.append(GradingRow(chapter, 2, seconds, scores, status))
        bar.update()
    return rows
