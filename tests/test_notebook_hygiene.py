"""Notebooks follow the course conventions (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from course_utils.exercise import CHAPTERS, chapter_exercises
from course_utils.notebooks import KEEP_OUTPUT_MARK, exercise_sections

ROOT = Path(__file__).resolve().parents[1]
ALL = sorted(p for d in ("notebooks", "solutions", "exercises") for p in (ROOT / d).glob("*.ipynb"))
AUTHORED = [p for p in ALL if p.parent.name in ("notebooks", "solutions")]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_outputs_only_in_marked_cells_and_course_kernel(path: Path) -> None:
    nb = _read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "compression-course"
    assert "jupytext" not in nb.metadata
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.outputs:
            assert KEEP_OUTPUT_MARK in cell.source, (
                f"cell {i} has committed outputs but no {KEEP_OUTPUT_MARK}"
            )
    assert path.stat().st_size < 400_000, "notebook too large: outputs or images committed?"


@pytest.mark.parametrize("path", AUTHORED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_seed_is_visible_in_first_code_cell(path: Path) -> None:
    first = next(c for c in _read(path).cells if c.cell_type == "code")
    assert "seed_everything(" in first.source, "seed the notebook in its first code cell"


def test_every_notebook_belongs_to_a_chapter() -> None:
    slugs = set(CHAPTERS.values())
    for path in ALL:
        assert path.stem in slugs, f"{path} is not a course chapter"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_exercises_match_specs(path: Path) -> None:
    nb = _read(path)
    sections = exercise_sections(nb)
    in_notebook = sorted(set(sections.values()), key=lambda s: tuple(map(int, s.split("."))))
    specs = {e.id: e for e in chapter_exercises(path.stem)}
    assert in_notebook == list(specs), f"headings {in_notebook} vs specs {list(specs)}"
    for ex_id, ex in specs.items():
        cells = [nb.cells[i].source for i, e in sections.items() if e == ex_id]
        body = "\n".join(cells)
        assert "### BEGIN SOLUTION" in body, f"Exercise {ex_id}: no solution markers"
        assert re.search(rf"^(def|class)\s+{ex.target}\b", body, re.M), f"{ex_id}: no def/class {ex.target}"
        assert re.search(rf"""check\(\s*["']{re.escape(ex_id)}["']\s*,\s*{ex.target}\b""", body), (
            f"Exercise {ex_id}: no check({ex_id!r}, {ex.target}) cell"
        )
        heading = next(nb.cells[i].source for i, e in sections.items() if e == ex_id)
        assert re.search(rf"\({ex.points} points?\)", heading), (
            f"{ex_id}: heading must state {ex.points} point(s)"
        )


def test_every_chapter_with_specs_has_a_solution_notebook() -> None:
    names = {p.stem for p in SOLUTIONS}
    for number, slug in CHAPTERS.items():
        if chapter_exercises(number):
            assert slug in names, f"specs exist for chapter {number} but solutions/{slug}.ipynb does not"
