"""Self-study progress: not started / ✓ / ✗ with the first failure, from the student's notebooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.exercise import chapter_exercises
from course_utils.progress import not_started, progress

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "02_masks_and_reparameterization"


def test_fresh_exercises_are_not_started_without_grading(tmp_path: Path) -> None:
    (tmp_path / f"{CHAPTER}.ipynb").write_bytes((ROOT / "exercises" / f"{CHAPTER}.ipynb").read_bytes())
    table = progress(tmp_path)
    n = len(chapter_exercises(CHAPTER))
    assert {r.status for r in table.rows} == {"not started"} and len(table.rows) == n
    assert f"(0/{n} done)" in str(table) and "First failure" not in str(table)


@pytest.mark.slow
def test_progress_cli_shows_passed_failed_and_first_failure(tmp_path: Path) -> None:
    nb = nbformat.read(str(ROOT / "solutions" / f"{CHAPTER}.ipynb"), 4)
    for cell in nb.cells:  # break 2.5: the schedule never moves from s_i
        if "def agp_schedule" in cell.source:
            cell.source = cell.source.replace(
                "out.append(s_f + (s_i - s_f)", "out.append(s_i + 0 * (s_i - s_f)"
            )
    nbformat.write(nb, str(tmp_path / f"{CHAPTER}.ipynb"))
    assert not_started(tmp_path / f"{CHAPTER}.ipynb") == set()
    proc = subprocess.run(
        [sys.executable, "-m", "course_utils", "progress", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    n = len(chapter_exercises(CHAPTER))
    assert "✓ 2.1" in out and "✓ 2.4" in out and "✗ 2.5" in out and f"({n - 1}/{n} done)" in out
    assert "First failure — exercise 2.5" in out and 'hint("2.5")' in out
    assert "sandbox" in out  # says whether the sandbox was used
