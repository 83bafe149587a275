"""The nbval plugin of `make test` fails a figure that reaches the notebook as text only, passes
it as an image, and saves the executed notebook for `make site`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

BARE_FIGURE = "from matplotlib.figure import Figure\nfig = Figure()\nfig.add_subplot().plot([0, 1])\nfig"


def test_text_only_figure_fails_and_png_figure_passes(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(BARE_FIGURE),  # no course_utils: IPython has no PNG formatter
        nbformat.v4.new_code_cell("import course_utils\n" + BARE_FIGURE),  # course_utils registers it
    ]
    path = tmp_path / "figs.ipynb"
    nbformat.write(nb, str(path))
    executed = tmp_path / "executed"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "course_utils.nbval_plugin",
         "--nbval-lax", "--nbval-current-env", "--rootdir", str(tmp_path), str(path)],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "COURSE_EXECUTED_DIR": str(executed), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    out = proc.stdout
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "figure shown as text, not as an image" in out
    saved = nbformat.read(str(executed / tmp_path.name / "figs.ipynb"), 4)
    assert "image/png" in saved.cells[1].outputs[0]["data"]
    assert "image/png" not in saved.cells[0].outputs[0]["data"]


def test_cells_wait_longer_than_nbvals_five_seconds_for_their_outputs():
    from course_utils import nbval_plugin

    IPyNbCell = type("IPyNbCell", (), {})  # noqa: N806 - named like nbval's item class
    cell, other = IPyNbCell(), type("Function", (), {})()
    cell.output_timeout, other.output_timeout = 5, 5
    nbval_plugin.pytest_collection_modifyitems([cell, other])
    assert cell.output_timeout == nbval_plugin.OUTPUT_TIMEOUT_S > 5
    assert other.output_timeout == 5
