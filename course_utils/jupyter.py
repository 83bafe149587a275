"""What the student sees in Jupyter: figures as PNG, short expected errors, no start-up noise.

Loaded in every course kernel (the kernelspec passes ``--ext course_utils.jupyter``) and again
on ``import course_utils`` (for kernels started otherwise, e.g. nbval's), idempotently:

- a bare ``matplotlib.figure.Figure`` (what ``course_utils.plotting`` returns) displays as a PNG
  even when ``matplotlib.pyplot`` was never imported: rendered at 2× the figure's dpi and shown
  at 1× (crisp on high-density screens), ``bbox_inches="tight"``;
- an error whose message runs over many lines (PyTorch's "Could not run 'quantized::…' with
  arguments from the 'CPU' backend" lists every backend registration) is cut to its first lines,
  so the traceback ends with the line that matters;
- a ``NameError`` for a course name (``check``, ``hint``, …) or any name at all in a fresh kernel
  says to run the notebook's first code cell (after a kernel restart nothing is defined);
- two known, harmless messages are silenced (:func:`quiet_known_noise`).
"""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from typing import Any

__all__ = [
    "figure_png",
    "install",
    "load_ipython_extension",
    "quiet_known_noise",
    "shorten_message",
    "MAX_MESSAGE_LINES",
]

MAX_MESSAGE_LINES = 6
FIGURE_SCALE = 2.0  # pixels rendered per displayed pixel
MAX_FIGURE_PIXELS = 2600  # width cap of the rendered PNG
RUN_FIRST_CELL = (
    "Run the notebook's first code cell (the set-up cell) first: after a kernel restart "
    "nothing is defined. Menu: Run ▸ Run All Above Selected Cell."
)
_INSTALLED_MARK = "_course_utils_jupyter"


class _DropMessage(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet_known_noise() -> None:
    """Silence two harmless messages a CPU-only student would otherwise see in red.

    - ``No CUDA runtime is found, using CUDA_HOME=…``: logged by ``torch.utils.cpp_extension``
      (imported by ``torch.utils.benchmark``) because the CUDA build of torch finds a CUDA_HOME
      but no GPU; nothing in the course needs CUDA.
    - ``Sparse CSR tensor support is in beta state``: printed once by ``to_sparse_csr()``;
      the course uses CSR only to time a sparse matmul.
    """
    log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _DropMessage) for f in log.filters):
        log.addFilter(_DropMessage(r"No CUDA runtime is found"))
    warnings.filterwarnings("ignore", message=r"Sparse CSR tensor support is in beta", category=UserWarning)


def figure_png(fig: Any) -> tuple[bytes, dict[str, int]]:
    """PNG bytes of a matplotlib ``Figure`` at ``FIGURE_SCALE``× its dpi, with display size metadata."""
    dpi = float(fig.dpi) * FIGURE_SCALE
    width_in = float(fig.get_size_inches()[0])
    dpi = min(dpi, MAX_FIGURE_PIXELS / max(width_in, 1e-6))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    data = buf.getvalue()
    # PNG header: width and height are big-endian uint32 at bytes 16..24
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    scale = dpi / float(fig.dpi)
    return data, {"width": round(w / scale), "height": round(h / scale)}


_BOILERPLATE = re.compile(r" This could be because the operator doesn't exist.*?possible resolutions\.", re.S)
_BACKENDS = re.compile(r"(only available for these backends: \[)([^\]]*)(\])")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shorten_message(text: str, max_lines: int = MAX_MESSAGE_LINES) -> str:
    """A long error message cut to what matters: PyTorch's dispatcher boilerplate and its list of
    kernel registrations go (the first paragraph stays), any other message keeps its first
    ``max_lines`` lines; says how much was cut."""
    lines = text.splitlines()
    if len(lines) <= max_lines and len(text) <= 600:
        return text
    paragraphs = re.split(r"\n\s*\n", text.strip())
    first = _BOILERPLATE.sub("", paragraphs[0])

    def few(m: re.Match[str]) -> str:
        items = [x.strip() for x in m.group(2).split(",")]
        keep = [x for x in items if "Quantized" in x or x in ("CPU", "CUDA", "Meta")][:4] or items[:3]
        return f"{m.group(1)}{', '.join(keep)}{', …' if len(keep) < len(items) else ''}{m.group(3)}"

    first = _BACKENDS.sub(few, first)
    first_lines = first.splitlines()
    if len(first_lines) > max_lines:
        first_lines = first_lines[:max_lines]
    cut = len(lines) - len(first_lines)
    if cut > 0:  # said on the last line, so the message still ends with the line that matters
        first_lines[-1] += f"  [… {cut} more lines of this message cut]"
    return "\n".join(first_lines)


def _is_library_frame(entry: str) -> bool:
    plain = _ANSI.sub("", entry).lstrip()
    return plain.startswith("File ") and ("site-packages" in plain or "/lib/python3" in plain)


def _collapse_library_frames(stb: list[str]) -> list[str]:
    """Traceback entries inside installed libraries (torch, …) collapsed into one line."""
    out: list[str] = []
    run = 0
    for entry in stb:
        if _is_library_frame(entry):
            run += 1
            continue
        if run:
            out.append(f"\x1b[2m[… {run} frame(s) inside installed libraries (torch, …) hidden]\x1b[0m\n")
            run = 0
        out.append(entry)
    return out


def _is_fresh(shell: Any) -> bool:
    """True when no ``course_utils`` module has been imported by the notebook's code."""
    ns = getattr(shell, "user_ns", {})
    for v in list(ns.values()):
        where = getattr(v, "__module__", None) or getattr(v, "__name__", None)
        if isinstance(where, str) and where.startswith("course_utils"):
            return False
    return True


def _rewrite(shell: Any, etype: type, value: BaseException, stb: list[str]) -> list[str]:
    """The traceback IPython is about to show, with a long message shortened and, after a
    ``NameError`` in a fresh kernel, a "run the first cell" line. ``_render_traceback_``
    errors (e.g. ``CheckFailed``) are shown as they are."""
    if value is None or hasattr(value, "_render_traceback_"):
        return stb
    stb = list(stb)
    full = str(value)
    short = shorten_message(full)
    if short != full and stb and full in stb[-1]:
        stb[-1] = stb[-1].replace(full, short)
        stb = _collapse_library_frames(stb)
    if isinstance(value, NameError) and _is_fresh(shell):
        stb.append(f"\x1b[33m{RUN_FIRST_CELL}\x1b[0m")
    return stb


def install(shell: Any = None) -> bool:
    """Register the PNG figure formatter and the error handler in ``shell`` (default: the
    running IPython). Returns False outside IPython. Idempotent."""
    quiet_known_noise()
    if shell is None:
        if "IPython" not in sys.modules:
            return False
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None or getattr(shell, _INSTALLED_MARK, False):
        return shell is not None
    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", figure_png)
    show = shell._showtraceback  # every traceback IPython shows goes through this method

    def _showtraceback(etype: type, value: BaseException, stb: list[str]) -> Any:
        try:
            stb = _rewrite(shell, etype, value, stb)
        except Exception:  # noqa: BLE001 - never hide the student's error behind ours
            pass
        return show(etype, value, stb)

    shell._showtraceback = _showtraceback
    setattr(shell, _INSTALLED_MARK, True)
    return True


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext course_utils.jupyter`` / ``--ext course_utils.jupyter``."""
    install(shell)


def install_kernelspec(
    name: str = "compression-course", display_name: str = "Python (compression-course)"
) -> str:
    """Install the course kernel into this environment (``sys.prefix``), loading this module as
    an IPython extension at start-up, so a restarted kernel already shows figures and says
    "run the first cell" on a ``NameError``. Returns the kernelspec folder."""
    import json
    from pathlib import Path

    from ipykernel.kernelspec import install as ipykernel_install

    path = Path(ipykernel_install(kernel_name=name, display_name=display_name, prefix=sys.prefix))
    spec_file = path / "kernel.json"
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    ext = "--ext=course_utils.jupyter"
    if ext not in spec["argv"]:
        spec["argv"].append(ext)
    spec_file.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return str(path)
