"""pytest plugin for the nbval run of ``make test`` (``-p course_utils.nbval_plugin``).

- Fails a notebook cell whose figure reached the output as text only (``<Figure size … with N
  Axes>`` without an image): the student would see that text in JupyterLab instead of the plot.
- Waits up to ``OUTPUT_TIMEOUT_S`` (not nbval's fixed 5 s) for a cell's outputs after its reply:
  on 2 busy cores a cell that trains with a progress bar can leave its output messages queued
  for longer than 5 s, which nbval reported as a failed cell (seen in a fresh-clone CI run).
- With ``COURSE_EXECUTED_DIR`` set, writes each notebook as nbval executed it (all outputs) to
  ``$COURSE_EXECUTED_DIR/<folder>/<name>.ipynb``, so ``make site`` converts those instead of
  executing every lesson again.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest

from .site import figure_problems

_EXECUTED: dict[str, nbformat.NotebookNode] = {}
OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    outcome = yield
    if call.when != "call" or not _is_nbval_cell(item):
        return
    report = outcome.get_result()
    outs = list(item.test_outputs or [])
    bad = figure_problems(outs)
    if bad and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid}: figure shown as text, not as an image: {bad}. Return the Figure from "
            "course_utils.plotting (course_utils.jupyter registers its PNG formatter)."
        )
    target = os.environ.get("COURSE_EXECUTED_DIR")
    if not target:
        return
    path = Path(str(item.parent.fspath))
    key = str(path)
    if key not in _EXECUTED:
        nb = copy.deepcopy(item.parent.nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        _EXECUTED[key] = nb
    nb = _EXECUTED[key]
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    source = item.cell.source
    match = next((c for c in code_cells if c.source == source and not c.get("_seen")), None)
    if match is None:
        return
    match["_seen"] = True
    match.outputs = [nbformat.from_dict(dict(o)) for o in outs]
    if not all(c.get("_seen") for c in code_cells):
        return  # written once every cell ran: make site never reads a half-executed notebook
    out = Path(target) / path.parent.name / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    clean = copy.deepcopy(nb)
    for cell in clean.cells:
        cell.pop("_seen", None)
    tmp = out.with_suffix(".ipynb.tmp")
    tmp.write_text(nbformat.writes(clean) + "\n", encoding="utf-8")
    tmp.replace(out)
