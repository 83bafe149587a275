"""Generate student exercise notebooks from the reference solutions.

``solutions/NN_slug.ipynb`` is the single source. For ``exercises/NN_slug.ipynb``:
- code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` (same indentation);
- in markdown, the text between the markers becomes ``_YOUR ANSWER HERE_``;
- cells tagged ``solution-only`` are dropped; all outputs are cleared;
- a header cell tells the student this file is theirs to edit (run the first cell first,
  then fill in and check) and authors that it is generated from the solution.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .notebooks import read_notebook

__all__ = ["make_exercise", "release", "ReleaseError"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HEADER_TAG = "generated-header"


class ReleaseError(ValueError):
    """A solution notebook is malformed (e.g. unbalanced solution markers)."""


def _blank(source: str, code: bool, where: str) -> str:
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ReleaseError(f"{where}: nested {BEGIN!r}.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if code:
                out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
            else:
                out.append("_YOUR ANSWER HERE_")
        elif stripped.startswith(END):
            if not inside:
                raise ReleaseError(f"{where}: {END!r} without {BEGIN!r}.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: {BEGIN!r} is never closed.")
    return "\n".join(out)


def make_exercise(solution: NotebookNode, source_name: str) -> NotebookNode:
    """The exercise notebook for one solution notebook (a new object; input untouched)."""
    nb = copy.deepcopy(solution)
    cells = []
    for i, cell in enumerate(nb.cells):
        if "solution-only" in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "markdown" and not cells and cell.source.startswith("# "):
            cell.source = cell.source.replace("(solutions)", "(exercises)", 1)
        if BEGIN in cell.source or END in cell.source:
            cell.source = _blank(cell.source, cell.cell_type == "code", f"{source_name} cell {i}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
        cells.append(cell)
    header = nbformat.v4.new_markdown_cell(
        "> **Your notebook: edit this file.** Run the first code cell first (again after every "
        "kernel restart). Then, for each exercise, replace `# YOUR CODE HERE` / "
        "`raise NotImplementedError()` with your code, run that cell, then the `check(...)` cell "
        'below it. A failing check says what differs first; `hint("N.K")` shows the recipe.\n>\n'
        f"> _Course authors: this file is generated from `solutions/{source_name}` by "
        "`python -m course_utils release`; edit the solution, not this file._",
        id="generated-header",
    )
    header.metadata["tags"] = [HEADER_TAG]
    nb.cells = [header, *cells]
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("jupytext", None)
    return nb


def release(root: str | Path = ".", check: bool = False) -> list[Path]:
    """Write (or with ``check=True`` only compare) every exercise notebook.

    Returns the exercise files that were stale (``check``) or rewritten.
    """
    root = Path(root)
    sol_dir, ex_dir = root / "solutions", root / "exercises"
    solutions = sorted(sol_dir.glob("[0-9][0-9]_*.ipynb"))
    if not solutions:
        raise ReleaseError(f"No solution notebooks in {sol_dir.resolve()}.")
    changed: list[Path] = []
    expected_names = set()
    for sol in solutions:
        text = nbformat.writes(make_exercise(read_notebook(sol), sol.name)) + "\n"
        target = ex_dir / sol.name
        expected_names.add(sol.name)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if not check:
                ex_dir.mkdir(exist_ok=True)
                tmp = target.with_suffix(".ipynb.tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(target)
    for orphan in sorted(ex_dir.glob("*.ipynb")):
        if orphan.name not in expected_names and re.match(r"\d\d_", orphan.name):
            changed.append(orphan)
            if not check:
                orphan.unlink()
    return changed
