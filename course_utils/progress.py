"""Self-study progress: ``python -m course_utils progress [exercises/]`` or, in a notebook,
``from course_utils.progress import progress; progress()``.

Grades the student's own exercise notebooks with the course grader (each in its own kernel,
in the bubblewrap sandbox when it can start, else without — said in the output) and prints one
row per exercise: ✓ (every public case passes), ✗ (with the first failure), or "not started"
(the cell still says ``raise NotImplementedError()``). Only public-case outcomes are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .exercise import CHAPTERS, chapter_exercises
from .notebooks import exercise_sections, read_notebook

__all__ = ["Row", "Progress", "progress", "not_started"]

BLANK = re.compile(r"#\s*YOUR CODE HERE\s*\n\s*raise NotImplementedError\(\)")


@dataclass
class Row:
    """One exercise: ``status`` is ``"passed"``, ``"failed"`` or ``"not started"``."""

    chapter: str
    id: str
    title: str
    status: str
    message: str = ""


@dataclass
class Progress:
    """The table; its text (``str``/notebook display) is what the CLI prints."""

    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    def first_failure(self) -> Row | None:
        return next((r for r in self.rows if r.status == "failed"), None)

    def __str__(self) -> str:
        mark = {"passed": "✓", "failed": "✗", "not started": "·"}
        lines, chapter = [], None
        for r in self.rows:
            if r.chapter != chapter:
                chapter = r.chapter
                done = sum(x.status == "passed" for x in self.rows if x.chapter == chapter)
                total = sum(x.chapter == chapter for x in self.rows)
                lines.append(f"{chapter}  ({done}/{total} done)")
            lines.append(f"  {mark[r.status]} {r.id:<5} {r.title[:48]:<48} {r.status}")
        first = self.first_failure()
        if first is not None:
            msg = "\n    ".join(first.message.strip().splitlines()[:6])
            lines += [
                "",
                f"First failure — exercise {first.id}:",
                f"    {msg}",
                f'    Stuck? hint("{first.id}")',
            ]
        lines += [f"({n})" for n in self.notes]
        return "\n".join(lines)

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(str(self))  # type: ignore[attr-defined]


def not_started(path: Path) -> set[str]:
    """Exercise ids whose code cell still holds the blank ``raise NotImplementedError()``."""
    nb = read_notebook(path)
    return {ex for i, ex in exercise_sections(nb).items() if BLANK.search(nb.cells[i].source)}


def _default_folder() -> Path:
    """``exercises/`` from the course root, or the current folder when a notebook runs inside it."""
    for cand in (Path("exercises"), Path("."), Path("../exercises")):
        if any(cand.glob("[0-9][0-9]_*.ipynb")) and cand.resolve().name == "exercises":
            return cand
    return Path("exercises")


def progress(folder: str | Path | None = None, sandbox: str = "auto", timeout: float = 120.0) -> Progress:
    """Grade every exercise notebook in ``folder`` (default: the course's ``exercises/``, also
    found from a notebook running inside it) and return the per-chapter table."""
    if folder is None:
        folder = _default_folder()
    from .grading import grade_submission
    from .grading.results import Limits

    folder = Path(folder)
    rows: list[Row] = []
    notes: list[str] = []
    for slug in CHAPTERS.values():
        exercises = chapter_exercises(slug)
        path = folder / f"{slug}.ipynb"
        if not exercises or not path.exists():
            continue
        blank = not_started(path)
        todo = [e for e in exercises if e.id not in blank]
        results = {}
        if todo:
            res = grade_submission(path, slug, Limits(cell_timeout=timeout, sandbox=sandbox), sandbox=sandbox)
            results = {e.id: e for e in res.exercises}
            said = [n for n in res.notes if "sandbox" in n.lower()]
            said = said or ([f"graded in the {sandbox} sandbox"] if sandbox == "bwrap" else [])
            notes += [n for n in said if n not in notes]
        for ex in exercises:
            if ex.id in blank:
                rows.append(Row(slug, ex.id, ex.title, "not started"))
                continue
            r = results.get(ex.id)
            public = [c for c in (r.cases if r else []) if not c.hidden]
            ok = bool(public) and all(c.status == "passed" for c in public)
            bad = next((c for c in public if c.status != "passed"), None)
            message = (bad.message if bad else (r.message if r else "not graded")) or (r.status if r else "")
            rows.append(Row(slug, ex.id, ex.title, "passed" if ok else "failed", "" if ok else message))
    if (
        sandbox == "auto"
        and not any("sandbox" in n.lower() for n in notes)
        and any(r.status != "not started" for r in rows)
    ):
        from .gradescope import _sandbox_note

        notes.append(_sandbox_note())
    if not rows:
        raise FileNotFoundError(f"No exercise notebooks (NN_slug.ipynb) in {folder.resolve()}.")
    return Progress(rows, notes)
