"""Both directions for every chapter that has a solution notebook: the unmodified solution
scores full marks and the generated exercise scores 0, each graded like a student's file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from course_utils.exercise import CHAPTERS, chapter_exercises
from course_utils.grading.cli import main as grade

ROOT = Path(__file__).resolve().parents[1]
PRESENT = [slug for slug in CHAPTERS.values() if (ROOT / "solutions" / f"{slug}.ipynb").exists()]


@pytest.mark.parametrize("slug", PRESENT)
def test_solution_scores_full_marks_and_exercise_scores_zero(slug, tmp_path):
    if not chapter_exercises(slug):
        pytest.skip(f"{slug} has a solution notebook but no exercise specs yet")
    sub = tmp_path / "subs"
    sub.mkdir()
    shutil.copy(ROOT / "solutions" / f"{slug}.ipynb", sub / "solution.ipynb")
    shutil.copy(ROOT / "exercises" / f"{slug}.ipynb", sub / "exercise.ipynb")
    out = tmp_path / "out"
    assert grade([slug, str(sub), "--out", str(out), "--jobs", "2", "--sandbox", "auto", "--quiet"]) == 0
    sol = json.loads((out / "solution" / "results.json").read_text())
    bad = {t["number"]: t["output"] for t in sol["tests"] if t["status"] != "passed"}
    assert not bad, bad
    assert sol["score"] == sol["max_score"] == sum(e.points for e in chapter_exercises(slug))
    ex = json.loads((out / "exercise" / "results.json").read_text())
    assert ex["score"] == 0
    for t in ex["tests"]:  # a stub raises NotImplementedError: error, never a crash or a timeout
        status = ex["extra_data"]["statuses"][t["number"]]
        assert status in ("error", "failed"), (t["number"], status, t["output"])
    assert "Internal grader error" not in json.dumps(ex) + json.dumps(sol)
