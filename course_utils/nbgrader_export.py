"""Export the course as an nbgrader course source: ``release --format nbgrader DIR``.

For each chapter with exercises, ``DIR/source/<slug>/<slug>.ipynb`` is the solution notebook
with nbgrader cell metadata (schema 3):

- a code cell with ``### BEGIN SOLUTION`` → *autograded answer* (``solution``);
- the first ``check("N.K", name)`` cell of an exercise → *autograder tests*, locked, worth the
  exercise's points, followed by the spec's hidden and edge cases between
  ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` (``check(..., hidden=True)``);
- a markdown cell tagged ``manual-answer`` or holding ``### BEGIN SOLUTION`` → *manually graded
  answer*, points from its ``(N point(s)`` text (else 0: set them in the formgrader);
- the first code cell (imports, seed) → read-only; ``solution-only`` cells are dropped.

``DIR/nbgrader_config.py`` names the course and uses the course kernel. nbgrader's autograde
runs the tests *inside the student's kernel* (its own security model, unlike
``python -m course_utils grade``, which keeps references and comparisons out of it).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .exercise import CHAPTERS, chapter_exercises, get_exercise
from .notebooks import exercise_sections, read_notebook

__all__ = ["nbgrader_notebook", "export_nbgrader", "CHECK_CALL"]

CHECK_CALL = re.compile(r"""^\s*check\(\s*["'](\d+\.\d+)["']\s*,\s*([A-Za-z_][A-Za-z0-9_]*)""", re.M)
POINTS = re.compile(r"\((\d+)\s+points?\b")
BEGIN = "### BEGIN SOLUTION"

CONFIG = """\
# nbgrader course configuration, written by `python -m course_utils release --format nbgrader`.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "compression-course"
c.CourseDirectory.root = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "_YOUR ANSWER HERE_"
c.ExecutePreprocessor.timeout = 900
c.Execute.timeout = 900
"""


def _meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: int | None = None) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = int(points or 0)
    return meta


def nbgrader_notebook(solution: NotebookNode, slug: str) -> NotebookNode:
    """The nbgrader source version of one solution notebook (a new object)."""
    nb = copy.deepcopy(solution)
    sections = exercise_sections(nb)
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    graded: set[str] = set()
    used: set[str] = set()
    cells = []

    def gid(base: str) -> str:
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if "solution-only" in tags:
            continue
        cell.metadata.pop("execution", None)
        ex_id = sections.get(i)
        stem = f"ex{ex_id.replace('.', '_')}" if ex_id else f"cell{i}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            calls = CHECK_CALL.findall(cell.source)
            if BEGIN in cell.source:
                cell.metadata["nbgrader"] = _meta(
                    gid(f"{stem}_answer"), solution=True, grade=False, locked=False
                )
            elif calls:
                hidden = "\n".join(f'check("{e}", {name}, hidden=True)' for e, name in calls)
                cell.source = (
                    f"{cell.source.rstrip()}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS"
                )
                first_id = calls[0][0]
                points = get_exercise(first_id).points if first_id not in graded else 0
                graded.add(first_id)
                cell.metadata["nbgrader"] = _meta(
                    gid(f"ex{first_id.replace('.', '_')}_tests"),
                    solution=False,
                    grade=True,
                    locked=True,
                    points=points,
                )
            elif i == first_code:
                cell.metadata["nbgrader"] = _meta(gid("setup"), solution=False, grade=False, locked=True)
        elif cell.cell_type == "markdown" and ("manual-answer" in tags or BEGIN in cell.source):
            m = POINTS.search(cell.source)
            cell.metadata["nbgrader"] = _meta(
                gid(f"{stem}_written"),
                solution=True,
                grade=True,
                locked=False,
                points=int(m.group(1)) if m else 0,
            )
        cells.append(cell)
    header = nbformat.v4.new_markdown_cell(
        f"> **Assignment `{slug}`** (nbgrader). Fill in every `# YOUR CODE HERE` and every "
        "_YOUR ANSWER HERE_; the `check(...)` cells are the autograded tests (hidden cases run at "
        "grading). Run the first code cell first.",
        id="nbgrader-header",
    )
    header.metadata["nbgrader"] = _meta("header", solution=False, grade=False, locked=True)
    nb.cells = [header, *cells]
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("jupytext", None)
    return nb


def export_nbgrader(root: str | Path, out: str | Path, chapters: list[str] | None = None) -> list[Path]:
    """Write ``out/nbgrader_config.py`` and ``out/source/<slug>/<slug>.ipynb``; returns the notebooks."""
    root, out = Path(root), Path(out)
    slugs = [
        s for s in CHAPTERS.values() if chapter_exercises(s) and (root / "solutions" / f"{s}.ipynb").exists()
    ]
    if chapters:
        wanted = set(chapters)
        slugs = [s for s in slugs if s in wanted or s[:2] in wanted or str(int(s[:2])) in wanted]
        if not slugs:
            raise ValueError(f"No chapter with exercises matches {sorted(wanted)}.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(CONFIG, encoding="utf-8")
    written = []
    for slug in slugs:
        nb = nbgrader_notebook(read_notebook(root / "solutions" / f"{slug}.ipynb"), slug)
        target = out / "source" / slug / f"{slug}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        written.append(target)
    return written
