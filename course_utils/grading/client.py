"""An nbclient ``NotebookClient`` that keeps no student output except errors.

Huge or endless outputs (prints, images, widgets) are dropped as they arrive, so they
cannot fill the grader's memory; error outputs are kept, truncated. Writing to stderr is
never a failure (nbgrader scores such cells 0).
"""

from __future__ import annotations

from typing import Any

from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import output_from_msg

__all__ = ["GradingClient"]

MAX_ERROR_CHARS = 2000


class GradingClient(NotebookClient):
    """Runs cells one at a time; stores only (truncated) error outputs."""

    def output(
        self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> NotebookNode | None:
        if msg["msg_type"] != "error":
            return None
        try:
            out = output_from_msg(msg)
        except ValueError:
            return None
        out["ename"] = str(out.get("ename", ""))[:200]
        out["evalue"] = str(out.get("evalue", ""))[:MAX_ERROR_CHARS]
        out["traceback"] = []
        if len(outs) < 5:
            outs.append(out)
        return out

    def clear_output(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        return None

    def handle_comm_msg(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        return None
