"""nbgrader export: cell metadata, and end to end with nbgrader itself (generate_assignment →
autograde a correct and a blank submission → scores from the gradebook)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.exercise import chapter_exercises
from course_utils.nbgrader_export import export_nbgrader, nbgrader_notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "02_masks_and_reparameterization"  # short solution notebook: fast to autograde
BIN = Path(sys.executable).parent


def _md(src: str, **meta: object) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(src, metadata=dict(meta))


def test_cells_get_nbgrader_roles_points_and_hidden_tests() -> None:
    nb = nbformat.read(str(ROOT / "solutions" / f"{CHAPTER}.ipynb"), 4)
    nb.cells.append(
        _md(
            "## Question 2.9 — why? (2 points)\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
            tags=["manual-answer"],
        )
    )
    nb.cells.append(nbformat.v4.new_code_cell("secret = 1", metadata={"tags": ["solution-only"]}))
    out = nbgrader_notebook(nb, CHAPTER)
    meta = [c.metadata.get("nbgrader") for c in out.cells]
    tests = [
        c for c in out.cells if (c.metadata.get("nbgrader") or {}).get("grade") and c.cell_type == "code"
    ]
    specs = chapter_exercises(CHAPTER)
    assert [m["points"] for m in meta if m and m["grade"] and m["grade_id"].endswith("_tests")] == [
        e.points for e in specs
    ]
    for cell, ex in zip(tests, specs):
        assert cell.metadata["nbgrader"]["locked"] and not cell.metadata["nbgrader"]["solution"]
        hidden = cell.source.split("### BEGIN HIDDEN TESTS\n", 1)[1]
        assert hidden.startswith(f'check("{ex.id}", {ex.target}, hidden=True)') and hidden.endswith(
            "### END HIDDEN TESTS"
        )
    answers = [
        c for c in out.cells if (c.metadata.get("nbgrader") or {}).get("solution") and c.cell_type == "code"
    ]
    assert answers and all(
        "### BEGIN SOLUTION" in c.source and not c.metadata["nbgrader"]["grade"] for c in answers
    )
    written = out.cells[-1]
    assert written.metadata["nbgrader"] == {
        **written.metadata["nbgrader"],
        "grade": True,
        "solution": True,
        "points": 2,
    }
    assert not any("secret" in c.source for c in out.cells)
    ids = [m["grade_id"] for m in meta if m]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"


@pytest.mark.slow
@pytest.mark.skipif(not (BIN / "nbgrader").exists(), reason="nbgrader is not installed in this environment")
def test_generate_and_autograde_with_nbgrader(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import find_kernel_specs

    if "compression-course" not in find_kernel_specs():
        pytest.skip("kernel 'compression-course' is not installed: run `make setup`")
    course = tmp_path / "course"
    export_nbgrader(ROOT, course, chapters=[CHAPTER])
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}

    def nbgrader(*args: str) -> None:
        proc = subprocess.run(
            [str(BIN / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    nbgrader("generate_assignment", CHAPTER, "--force")
    student_nb = course / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    assert "### BEGIN SOLUTION" not in student_nb.read_text() and "HIDDEN TESTS" not in student_nb.read_text()
    for student, src in (("correct", course / "source"), ("blank", course / "release")):
        dest = course / "submitted" / student / CHAPTER
        dest.mkdir(parents=True)
        shutil.copy(src / CHAPTER / f"{CHAPTER}.ipynb", dest)
    nbgrader("autograde", CHAPTER, "--force")

    from nbgrader.api import Gradebook

    auto = sum(e.points for e in chapter_exercises(CHAPTER))  # the check cells' points
    source = nbformat.read(str(course / "source" / CHAPTER / f"{CHAPTER}.ipynb"), 4)
    graded = sum(
        c.metadata["nbgrader"]["points"] for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")
    )
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        correct, blank = (gb.find_submission(CHAPTER, s) for s in ("correct", "blank"))
        assert correct.max_score == blank.max_score == graded  # written answers graded by hand
        assert correct.score == auto and blank.score == 0
