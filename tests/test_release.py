"""Release: solutions → exercises, and the staleness check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.release import ReleaseError, make_exercise, release

ROOT = Path(__file__).resolve().parents[1]


def _solution() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Chapter 1 — Demo (solutions)"),
        nbformat.v4.new_markdown_cell("## Exercise 1.1 — twice (1 point)"),
        nbformat.v4.new_code_cell(
            "def twice(x):\n    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION"
        ),
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
        nbformat.v4.new_code_cell("secret = 42", metadata={"tags": ["solution-only"]}),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[2].execution_count = 3
    return nb


def test_make_exercise_blanks_code_and_answers() -> None:
    sol = _solution()
    ex = make_exercise(sol, "01_demo.ipynb")
    sources = [c.source for c in ex.cells]
    assert "Your notebook: edit this file" in sources[0] and "Run the first code cell first" in sources[0]
    assert "generated from `solutions/01_demo.ipynb`" in sources[0]
    assert sources[1] == "# Chapter 1 — Demo (exercises)"
    assert sources[3] == "def twice(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert sources[4] == "Why?\n_YOUR ANSWER HERE_"
    assert not any("secret" in s for s in sources), "solution-only cells must be dropped"
    assert ex.cells[3].outputs == [] and ex.cells[3].execution_count is None
    assert "y = 2 * x" in sol.cells[2].source, "the solution notebook must not be modified"


def test_blanked_code_raises_not_implemented() -> None:
    ex = make_exercise(_solution(), "01_demo.ipynb")
    ns: dict = {}
    exec(ex.cells[3].source, ns)
    with pytest.raises(NotImplementedError):
        ns["twice"](3)


@pytest.mark.parametrize(
    "source",
    ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION"],
)
def test_unbalanced_markers_are_reported(source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    with pytest.raises(ReleaseError, match="bad.ipynb cell 0"):
        make_exercise(nb, "bad.ipynb")


def test_release_check_detects_stale_and_orphans(tmp_path: Path) -> None:
    (tmp_path / "solutions").mkdir()
    nbformat.write(_solution(), str(tmp_path / "solutions" / "01_demo.ipynb"))
    assert release(tmp_path, check=True) == [tmp_path / "exercises" / "01_demo.ipynb"]
    assert release(tmp_path) == [tmp_path / "exercises" / "01_demo.ipynb"]
    assert release(tmp_path, check=True) == []
    # editing the solution makes the exercise stale again
    sol = nbformat.read(str(tmp_path / "solutions" / "01_demo.ipynb"), 4)
    sol.cells[1].source = "## Exercise 1.1 — twice, renamed (1 point)"
    nbformat.write(sol, str(tmp_path / "solutions" / "01_demo.ipynb"))
    assert release(tmp_path, check=True) == [tmp_path / "exercises" / "01_demo.ipynb"]
    release(tmp_path)
    orphan = tmp_path / "exercises" / "02_gone.ipynb"
    orphan.write_text("{}")
    assert release(tmp_path, check=True) == [orphan]
    release(tmp_path)
    assert not orphan.exists()


def test_committed_exercises_are_up_to_date() -> None:
    """The same check `make test` and the before-stop hook run, through the CLI."""
    proc = subprocess.run(
        [sys.executable, "-m", "course_utils", "release", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
