"""course_utils.jupyter: figures display as PNG in a fresh kernel, long messages are cut,
a NameError in a fresh kernel says to run the first cell, known noise is silenced."""

from __future__ import annotations

import logging
import warnings

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.jupyter import figure_png, quiet_known_noise, shorten_message


@pytest.fixture(scope="module")
def cells() -> list[nbformat.NotebookNode]:
    """One fresh kernel (no course_utils, no pyplot) running the cells the tests look at."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(s)
        for s in (
            "%load_ext course_utils.jupyter\ncheck('1.1', f)",  # as after a kernel restart
            "import sys, torch\nfrom course_utils.plotting import plot_weight_histogram\n"
            "fig = plot_weight_histogram(torch.randn(8, 8))\n"
            "assert 'matplotlib.pyplot' not in sys.modules\nfig",
            "from IPython.display import display\ndisplay(fig)",
            "raise RuntimeError('the line that matters\\n' + 'registration\\n' * 100)",
            "from course_utils.checks import CheckFailed\n"
            "raise CheckFailed('\\n'.join(f'line {i}' for i in range(20)))",
        )
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True).execute()
    return nb.cells


def _traceback(cell: nbformat.NotebookNode) -> str:
    (err,) = [o for o in cell.outputs if o.output_type == "error"]
    return "\n".join(err.traceback)


def test_plotting_figure_is_a_png_in_a_kernel_without_pyplot(cells: list) -> None:
    for cell in cells[1:3]:
        (out,) = [o for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
        assert len(out.data["image/png"]) > 2000
        assert out.metadata["image/png"]["width"] > 200  # shown at 1×, rendered at 2×


def test_name_error_in_a_fresh_kernel_says_run_the_first_cell(cells: list) -> None:
    assert "Run the notebook's first code cell" in _traceback(cells[0])


def test_long_error_message_is_cut_but_a_check_failure_is_not(cells: list) -> None:
    text = _traceback(cells[3])
    assert "the line that matters" in text and "more lines of this message cut" in text
    assert text.count("registration") < 10
    assert "line 19" in _traceback(cells[4])
    assert shorten_message("a\nb", max_lines=6) == "a\nb"


def test_dispatcher_error_keeps_the_sentence_that_matters() -> None:
    msg = (
        "Could not run 'quantized::conv2d' with arguments from the 'CPU' backend. This could be because "
        "the operator doesn't exist for this backend, or was omitted. If you are a Facebook employee "
        "using PyTorch on mobile, please visit https://fburl.com/ptmfixes for possible resolutions. "
        "'quantized::conv2d' is only available for these backends: [Meta, QuantizedCPU, Python, Tracer].\n\n"
        + "\n".join(f"Backend{i}: registered at aten/x.cpp:{i}" for i in range(40))
    )
    short = shorten_message(msg)
    assert short.count("\n") == 0 and "registered at" not in short and "Facebook" not in short
    assert short.startswith("Could not run 'quantized::conv2d' with arguments from the 'CPU' backend.")
    assert "[Meta, QuantizedCPU, …]" in short and "more lines of this message cut]" in short


def test_figure_png_size_metadata() -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=100)
    fig.subplots().plot([0, 1], [0, 1])
    data, md = figure_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w = int.from_bytes(data[16:20], "big")
    assert w == pytest.approx(2 * md["width"], abs=2) and 300 < md["width"] <= 400


def test_known_noise_is_silenced_and_other_messages_are_not(caplog: pytest.LogCaptureFixture) -> None:
    quiet_known_noise()
    log = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING, logger=log.name):
        log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        log.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_known_noise()
        warnings.warn("Sparse CSR tensor support is in beta state. If you miss …", UserWarning, stacklevel=1)
        warnings.warn("another warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another warning"]
