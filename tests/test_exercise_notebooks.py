"""Generated exercise notebooks run up to their blanks, and each self-check fails helpfully."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r"""check\(\s*["'](\d+\.\d+)["']""")
ALLOWED_ERRORS = {"NotImplementedError", "CheckFailed"}


@pytest.mark.skipif(not EXERCISES, reason="no exercise notebooks released yet")
@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_exercise_notebook_fails_only_at_blanks(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    errors: list[tuple[int, str, str]] = []
    checks_seen = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        err = next((o for o in cell.outputs if o.output_type == "error"), None)
        if err is not None:
            errors.append((i, err.ename, err.evalue))
            assert err.ename in ALLOWED_ERRORS, (
                f"{path.name} cell {i} failed with {err.ename}: {err.evalue} — in a fresh exercise "
                "notebook every cell must run or stop at a blank (NotImplementedError/CheckFailed)."
            )
        m = CHECK_CALL.search(cell.source)
        if m and "NBVAL_RAISES_EXCEPTION" not in cell.source:
            checks_seen += 1
            assert err is not None and err.ename == "CheckFailed", (
                f"{path.name} cell {i}: check({m.group(1)}) should fail on the blank exercise"
            )
            assert f"Exercise {m.group(1)}" in err.evalue and "not implemented yet" in err.evalue
            assert "Replace `raise NotImplementedError()`" in err.evalue
    assert errors, f"{path.name}: no cell stopped at a blank — is anything left for the student?"
    assert checks_seen >= 1, f"{path.name}: no check(...) cell"
