"""Notebook helpers: sections by heading, output stripping, execution, solution extraction."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course_utils.notebooks import execute_notebook, exercise_sections, solution_namespace, strip_outputs


def _nb(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_exercise_sections_follow_headings() -> None:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = _nb(
        md("# Chapter 9"),
        code("setup = 1"),
        md("## Exercise 9.1 — first (1 point)"),
        code("def f(): ..."),
        md("### a sub-heading stays inside"),
        code("check('9.1', f)"),
        md("## Exercise 9.2 — second (2 points)"),
        code("def g(): ..."),
        md("## Wrap-up"),
        code("print('done')"),
    )
    assert exercise_sections(nb) == {2: "9.1", 3: "9.1", 4: "9.1", 5: "9.1", 6: "9.2", 7: "9.2"}


def test_execute_keeps_only_marked_outputs_and_runs_past_expected_errors(tmp_path: Path) -> None:
    path = tmp_path / "demo.ipynb"
    nbformat.write(
        _nb(
            nbformat.v4.new_code_cell("print('noise')"),
            nbformat.v4.new_code_cell("# NBVAL_RAISES_EXCEPTION\nraise ValueError('expected')"),
            nbformat.v4.new_code_cell("raise KeyError('x')", metadata={"tags": ["raises-exception"]}),
            nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(6 * 7)"),
        ),
        str(path),
    )
    execute_notebook(path, timeout=60)
    cells = nbformat.read(str(path), as_version=4).cells
    assert cells[0].outputs == [] and cells[1].outputs == [] and cells[2].outputs == []
    assert [o.text for o in cells[3].outputs] == ["42\n"]
    # the old comment became the tag JupyterLab honours (Run All continues); the tag stays committed
    assert cells[1].source == "raise ValueError('expected')"
    assert cells[1].metadata["tags"] == ["raises-exception"] == cells[2].metadata["tags"]


def test_execute_fails_on_an_untagged_error_and_on_a_tagged_cell_that_does_not_raise(tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    path = tmp_path / "demo.ipynb"
    nbformat.write(_nb(nbformat.v4.new_code_cell("1 / 0")), str(path))
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        execute_notebook(path, timeout=60, write=False)
    nbformat.write(
        _nb(nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["raises-exception"]})), str(path)
    )
    with pytest.raises(RuntimeError, match="did not raise"):
        execute_notebook(path, timeout=60, write=False)


def test_strip_outputs_clears_counts_and_widget_state() -> None:
    cell = nbformat.v4.new_code_cell("x = 1", execution_count=4)
    cell.outputs = [nbformat.v4.new_output("stream", text="x")]
    nb = _nb(cell)
    nb.metadata["widgets"] = {"state": {}}
    strip_outputs(nb)
    assert cell.outputs == [] and cell.execution_count is None and "widgets" not in nb.metadata


def test_solution_namespace_runs_setup_and_exercise_cells_only(tmp_path: Path) -> None:
    path = tmp_path / "sol.ipynb"
    nbformat.write(
        _nb(
            nbformat.v4.new_code_cell("base = 10"),
            nbformat.v4.new_code_cell("raise RuntimeError('a demo cell outside exercises is skipped')"),
            nbformat.v4.new_markdown_cell("## Exercise 9.1 — add (1 point)"),
            nbformat.v4.new_code_cell("def add(x):\n    return base + x"),
            nbformat.v4.new_code_cell("check('9.1', add)  # not run: check cells are skipped"),
        ),
        str(path),
    )
    ns = solution_namespace(path)
    assert ns["add"](5) == 15
