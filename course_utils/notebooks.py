"""Notebook helpers shared by release, grading and the tests.

Conventions:
- An exercise section starts at a markdown heading containing ``Exercise X.Y`` and runs
  until the next heading that names another exercise or is of the same or higher level.
- Solution code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines.
- Committed notebooks keep outputs only in cells whose source contains
  ``NBVAL_CHECK_OUTPUT`` (deterministic cells nbval compares under ``--nbval-lax``).
- A cell that is meant to raise carries the ``raises-exception`` tag, committed: JupyterLab's
  Run All continues past it, nbclient and nbval expect its error. (The older comment
  ``# NBVAL_RAISES_EXCEPTION`` is turned into the tag by :func:`tag_raising_cells`: nbval warns
  when both say the same.)
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = [
    "EXERCISE_HEADING",
    "exercise_sections",
    "read_notebook",
    "write_notebook",
    "strip_outputs",
    "tag_raising_cells",
    "RAISES_TAG",
    "execute_notebook",
    "solution_namespace",
]

EXERCISE_HEADING = re.compile(r"^(#{1,6})\s.*?\bExercise\s+(\d+\.\d+)\b", re.MULTILINE)
_HEADING = re.compile(r"^(#{1,6})\s", re.MULTILINE)
KEEP_OUTPUT_MARK = "NBVAL_CHECK_OUTPUT"
RAISES_TAG = "raises-exception"
_RAISES_COMMENT = re.compile(r"^[ \t]*#[ \t]*NBVAL_RAISES_EXCEPTION[^\n]*(\n|$)", re.MULTILINE)


def read_notebook(path: str | Path) -> NotebookNode:
    """Read an .ipynb as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


def write_notebook(nb: NotebookNode, path: str | Path) -> None:
    """Write deterministically (1-space indent, trailing newline), atomically."""
    path = Path(path)
    tmp = path.with_suffix(".ipynb.tmp")
    tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    tmp.replace(path)


def exercise_sections(nb: NotebookNode) -> dict[int, str]:
    """Map cell index → exercise id for every cell inside an ``Exercise X.Y`` section."""
    out: dict[int, str] = {}
    current: str | None = None
    level = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            m = EXERCISE_HEADING.search(cell.source)
            h = _HEADING.search(cell.source)
            if m:
                current, level = m.group(2), len(m.group(1))
            elif h and current is not None and len(h.group(1)) <= level:
                current = None
        if current is not None:
            out[i] = current
    return out


def strip_outputs(nb: NotebookNode) -> NotebookNode:
    """Clear outputs and counts except in cells marked ``NBVAL_CHECK_OUTPUT``."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if KEEP_OUTPUT_MARK not in cell.source:
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("jupytext", None)
    return nb


def tag_raising_cells(nb: NotebookNode) -> list[int]:
    """Give every cell marked ``# NBVAL_RAISES_EXCEPTION`` the ``raises-exception`` tag instead
    (the comment line is removed). Returns the indices of all cells tagged to raise."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if _RAISES_COMMENT.search(cell.source):
            cell.source = _RAISES_COMMENT.sub("", cell.source)
            tags = cell.metadata.setdefault("tags", [])
            if RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
        if RAISES_TAG in cell.metadata.get("tags", []):
            out.append(i)
    return out


def execute_notebook(
    path: str | Path, timeout: int = 600, write: bool = True, keep_outputs: bool = False
) -> NotebookNode:
    """Run a notebook top to bottom in its folder, keep only the marked outputs, write it back.

    Errors are allowed only in cells tagged ``raises-exception`` (and such a cell must raise).
    ``keep_outputs=True`` returns every output (for the static site; then ``write`` must be False).
    """
    if keep_outputs and write:
        raise ValueError("keep_outputs=True is for reading only: pass write=False.")
    import tempfile

    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    path = Path(path)
    nb = read_notebook(path)
    raising = tag_raising_cells(nb)
    with tempfile.TemporaryDirectory() as sockets:  # unix sockets: no TCP port, no plaintext warning
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        try:
            client = NotebookClient(
                nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}
            )
            client.execute()
        finally:  # nbclient leaves a kernel it did not create running
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    silent = [i for i in raising if not any(o.output_type == "error" for o in nb.cells[i].outputs)]
    if silent:
        raise RuntimeError(f"{path.name}: cells {silent} are tagged {RAISES_TAG!r} but did not raise.")
    if keep_outputs:
        return nb
    strip_outputs(nb)
    if write:
        write_notebook(nb, path)
    return nb


def solution_namespace(path: str | Path) -> dict:
    """Run a solution notebook's first code cell and its exercise cells (not ``check(`` cells).

    Returns the resulting namespace, e.g. ``ns["l1_unstructured_mask"]``: the reference
    solutions straight from their single source, for tests and instructors.
    """
    import contextlib
    import io

    path = Path(path)
    nb = read_notebook(path)
    sections = exercise_sections(nb)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    ns: dict = {"__name__": f"solution_{path.stem}"}
    with contextlib.redirect_stdout(io.StringIO()):
        for i in code:
            src = nb.cells[i].source
            if (i == code[0] or i in sections) and "check(" not in src:
                exec(compile(src, f"{path.name} cell {i}", "exec"), ns)
    return ns
