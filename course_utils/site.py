"""The course's start page (``START.ipynb``, opened by ``make lab``) and a static HTML site.

``make site`` = ``python -m course_utils site``: every lesson executed offline (or taken from
the notebooks nbval already executed during ``make test``, see ``course_utils.nbval_plugin``),
converted with nbconvert to ``build/site/notebooks/NN.html``; the exercise notebooks as read-only
HTML; and ``index.html`` listing the chapters (title and first paragraph of each lesson) with
links to lesson and exercise. Links between notebooks (``../exercises/NN.ipynb``) point to
the ``.html`` pages.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .notebooks import read_notebook

__all__ = ["Chapter", "chapters", "start_notebook", "write_start", "build_site", "figure_problems"]

FIGURE_TEXT = re.compile(r"^<(matplotlib\.figure\.)?Figure size \d+(\.\d+)?x\d+(\.\d+)? with \d+ Axes>$")


@dataclass(frozen=True)
class Chapter:
    """A lesson and (when it has one) its exercise notebook, both relative to the course root."""

    slug: str
    title: str
    summary: str
    lesson: str
    exercise: str | None


def _first_paragraph(text: str, limit: int = 320) -> str:
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    body = next((p for p in paras if not p.startswith("#")), "")
    body = re.sub(r"\s+", " ", body)
    if len(body) > limit:
        cut = body[:limit]
        body = cut[: cut.rfind(". ") + 1] if ". " in cut else cut.rsplit(" ", 1)[0] + " …"
    return body


def chapters(root: str | Path = ".") -> list[Chapter]:
    """Every lesson in ``notebooks/``, titled by its first heading, summarized by its first paragraph."""
    root = Path(root)
    out = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = read_notebook(path)
        first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
        m = re.search(r"^#\s+(.+)$", first, re.M)
        title = m.group(1).strip() if m else path.stem
        ex = root / "exercises" / path.name
        out.append(
            Chapter(
                slug=path.stem,
                title=title,
                summary=_first_paragraph(first[m.end() :] if m else first),
                lesson=f"notebooks/{path.name}",
                exercise=f"exercises/{path.name}" if ex.exists() else None,
            )
        )
    return out


START_INTRO = """# Start here — compression-course

How to work through a chapter:

1. Open the **lesson** (`notebooks/`) and run it top to bottom (**Run ▸ Run All Cells**). The first
   code cell is the set-up cell (imports, seed): after a kernel restart, run it again first.
   Cells marked with a red error on purpose are tagged `raises-exception`; Run All continues.
2. Open the **exercise** notebook (`exercises/`) — that file is yours to edit. Replace each
   `# YOUR CODE HERE` / `raise NotImplementedError()`, run the cell, then the `check("N.K", …)`
   cell below it. A failing check says what differs first; `hint("N.K")` shows the recipe.
3. See where you stand: `python -m course_utils progress` in a terminal, or in a notebook
   `from course_utils.progress import progress; progress()`.

`solutions/` holds the reference solutions — open them after you tried.
"""


def start_notebook(root: str | Path = ".") -> NotebookNode:
    """The start page: how to work, then one row per chapter with clickable relative links."""
    rows = ["| Chapter | Lesson | Exercises | What it teaches |", "| --- | --- | --- | --- |"]
    for ch in chapters(root):
        ex = f"[{ch.exercise}]({ch.exercise})" if ch.exercise else "—"
        summary = ch.summary.replace("|", "\\|").replace("$$", "$")  # inline math in a table
        rows.append(f"| {ch.title} | [{ch.lesson}]({ch.lesson}) | {ex} | {summary} |")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(START_INTRO, id="start-intro"),
        nbformat.v4.new_markdown_cell("## Chapters\n\n" + "\n".join(rows), id="start-chapters"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "compression-course",
        "display_name": "Python (compression-course)",
        "language": "python",
    }
    return nb


def write_start(root: str | Path = ".") -> Path:
    """Write ``START.ipynb`` at the course root (generated; not committed)."""
    path = Path(root) / "START.ipynb"
    path.write_text(nbformat.writes(start_notebook(root)) + "\n", encoding="utf-8")
    return path


def figure_problems(outputs: list) -> list[str]:
    """Descriptions of figure outputs that reached the notebook as text only (no image)."""
    bad = []
    for out in outputs:
        data = out.get("data", {}) if hasattr(out, "get") else {}
        text = data.get("text/plain", "")
        text = "".join(text) if isinstance(text, list) else text
        if FIGURE_TEXT.match(text.strip()) and not any(k.startswith("image/") for k in data):
            bad.append(text.strip())
    return bad


def _same_sources(a: NotebookNode, b: NotebookNode) -> bool:
    return [c.source for c in a.cells] == [c.source for c in b.cells]


def _executed_lesson(path: Path, executed_dir: Path | None, timeout: int) -> NotebookNode:
    """The executed lesson: nbval's copy from ``make test`` when it matches, else run it now."""
    if executed_dir is not None:
        cached = executed_dir / "notebooks" / path.name
        if cached.exists():
            nb = read_notebook(cached)
            if _same_sources(nb, read_notebook(path)):
                return nb
    from .notebooks import execute_notebook

    return execute_notebook(path, timeout=timeout, write=False, keep_outputs=True)


def _html(nb: NotebookNode, title: str) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # links between notebooks point to their pages
    return re.sub(r'href="([^"#:]+)\.ipynb', r'href="\1.html', body)


def _inline_markdown(text: str) -> str:
    """A summary paragraph as HTML (code, bold, links; TeX shown as code)."""
    from markdown_it import MarkdownIt

    text = re.sub(r"\$\$?([^$]+)\$\$?", r"`\1`", text)
    return MarkdownIt("commonmark", {"html": False}).renderInline(text)


INDEX_CSS = """body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .ch{border-top:1px solid #ddd;padding:.8rem 0} .ch h2{margin:.2rem 0;font-size:1.2rem}
.links a{margin-right:1rem} .note{color:#555}"""


def index_html(chs: list[Chapter]) -> str:
    """The site's index page: chapters, what each teaches, links to lesson and exercise."""
    items = []
    for ch in chs:
        lesson = ch.lesson.removesuffix(".ipynb") + ".html"
        ex = (
            f'<a href="{html.escape(ch.exercise.removesuffix(".ipynb"))}.html">exercises</a>'
            if ch.exercise
            else ""
        )
        items.append(
            f'<div class="ch"><h2><a href="{html.escape(lesson)}">{html.escape(ch.title)}</a></h2>'
            f"<p>{_inline_markdown(ch.summary)}</p>"
            f'<p class="links"><a href="{html.escape(lesson)}">lesson (executed)</a>{ex}</p></div>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>compression-course</title><style>{INDEX_CSS}</style></head><body>"
        "<h1>compression-course</h1><p class='note'>Compressing PyTorch models: every lesson below was "
        "executed offline on CPU; its numbers and plots are from that run. Exercises are shown "
        "unsolved — work on them in JupyterLab (<code>make lab</code>).</p>"
        + "".join(items)
        + "</body></html>"
    )


def build_site(
    root: str | Path = ".",
    out: str | Path = "build/site",
    executed_dir: str | Path | None = None,
    only: list[str] | None = None,
    timeout: int = 900,
) -> Path:
    """Write the static site; returns the index path. ``only``: lesson slugs to include."""
    root, out = Path(root), Path(out)
    executed = Path(executed_dir) if executed_dir else None
    chs = [c for c in chapters(root) if only is None or c.slug in only]
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "exercises").mkdir(parents=True, exist_ok=True)
    for ch in chs:
        print(f"site: {ch.lesson}", flush=True)
        nb = _executed_lesson(root / ch.lesson, executed, timeout)
        bad = [p for c in nb.cells if c.cell_type == "code" for p in figure_problems(c.outputs)]
        if bad:
            raise RuntimeError(f"{ch.lesson}: figure outputs without an image: {bad}")
        (out / ch.lesson).with_suffix(".html").write_text(_html(nb, ch.title), encoding="utf-8")
        if ch.exercise:
            ex = read_notebook(root / ch.exercise)
            (out / ch.exercise).with_suffix(".html").write_text(_html(ex, ch.title), encoding="utf-8")
    index = out / "index.html"
    index.write_text(index_html(chs), encoding="utf-8")
    return index
