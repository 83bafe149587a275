"""Gradescope bundle: the zip's layout, and run_autograder under a temp /autograder root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from course_utils.exercise import chapter_exercises
from course_utils.gradescope import build_bundle

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "02_masks_and_reparameterization"


def test_bundle_layout(tmp_path: Path) -> None:
    out = build_bundle(2, tmp_path / "autograder.zip", ROOT)
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "course/requirements.lock", "course/pyproject.toml"} <= names
        assert "course/course_utils/grading/runner.py" in names and not any("__pycache__" in n for n in names)
        for name in ("setup.sh", "run_autograder"):
            assert (z.getinfo(name).external_attr >> 16) & 0o111, f"{name} must be executable"
        assert "requirements.lock" in z.read("setup.sh").decode()
        assert f"gradescope-run {CHAPTER}" in z.read("run_autograder").decode()


@pytest.mark.slow
def test_run_autograder_grades_the_submission(tmp_path: Path) -> None:
    gs = tmp_path / "autograder"
    with zipfile.ZipFile(build_bundle(CHAPTER, tmp_path / "autograder.zip", ROOT)) as z:
        z.extractall(gs / "source")
    (gs / "submission").mkdir(parents=True)
    (gs / "submission" / f"{CHAPTER}.ipynb").write_bytes(
        (ROOT / "solutions" / f"{CHAPTER}.ipynb").read_bytes()
    )
    env = {**os.environ, "GRADESCOPE_ROOT": str(gs), "COURSE_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    script = gs / "source" / "run_autograder"
    script.chmod(0o755)
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((gs / "results" / "results.json").read_text())
    total = sum(e.points for e in chapter_exercises(CHAPTER))
    assert (data["score"], data["max_score"]) == (total, total)
    assert "sandbox" in data["output"].lower()  # says whether it ran in the sandbox
    assert len(data["tests"]) == len(chapter_exercises(CHAPTER))
    for t in data["tests"]:
        assert t["status"] in ("passed", "failed") and {"name", "score", "max_score", "output"} <= set(t)


def test_empty_submission_scores_zero_with_a_message(tmp_path: Path) -> None:
    from course_utils.gradescope import run

    (tmp_path / "submission").mkdir()
    data = run("2", tmp_path / "submission", tmp_path / "results" / "results.json")
    assert data["score"] == 0 and f"{CHAPTER}.ipynb" in data["output"]
    assert json.loads((tmp_path / "results" / "results.json").read_text()) == data
