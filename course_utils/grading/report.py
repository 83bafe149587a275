"""Write the grades: ``grades.csv``, ``<student>/results.json`` (Gradescope), ``feedback.html``.

Every file is written atomically (temporary file in the same folder, then ``os.replace``),
so an interrupted run never leaves half a file and a re-run overwrites cleanly. Feedback
shows, per exercise, the status, the score and what differs: the compare message for
public cases, only ``hidden case N <status>`` plus a one-line reason for hidden ones. No
test source and no hidden inputs are ever written (they are not in ``SubmissionResult``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import tempfile
from pathlib import Path

from .results import CaseResult, ExerciseResult, SubmissionResult

__all__ = [
    "atomic_write",
    "exercise_output",
    "results_json",
    "csv_cell",
    "feedback_html",
    "write_submission",
    "write_grades",
]

MAX_TEXT = 4000  # characters of feedback per exercise
MAX_HIDDEN_LINE = 200  # characters of the reason shown for a hidden case


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + " … (truncated)"


def _case_line(c: CaseResult) -> str:
    if c.hidden:
        first = c.message.strip().splitlines()[0] if c.message.strip() else ""
        return f"hidden case {c.index} {c.status}" + (
            f": {_truncate(first, MAX_HIDDEN_LINE)}" if first else ""
        )
    return f"public case {c.index} {c.status}" + (f": {c.message}" if c.message else "")


def exercise_output(e: ExerciseResult) -> str:
    """The text a student sees for one exercise."""
    lines = [e.message] if e.message else []
    # Measured-outcome exercises (the capstone) report what was measured on passed cases too.
    lines += [_case_line(c) for c in e.cases if c.status == "passed" and c.message]
    bad = [c for c in e.cases if c.status != "passed"]
    if len(bad) > 1 and len({(c.status, c.message) for c in bad}) == 1:  # e.g. all "not implemented"
        first = bad[0].message.strip().splitlines()[0] if bad[0].message.strip() else ""
        if all(c.hidden for c in bad):
            first = _truncate(first, MAX_HIDDEN_LINE)
        lines.append(f"{len(bad)} cases {bad[0].status}" + (f": {first}" if first else ""))
        return _truncate("\n".join(lines), MAX_TEXT)
    not_run = [c for c in bad if c.message.startswith("not run:")]
    lines += [_case_line(c) for c in bad if c not in not_run]
    if not_run:
        lines.append(f"({len(not_run)} later case(s) were not run: {not_run[0].message[len('not run: ') :]})")
    return _truncate("\n".join(lines), MAX_TEXT)


def results_json(r: SubmissionResult) -> dict:
    """Gradescope's autograder ``results.json``.

    A test's ``status`` is only ``passed`` or ``failed`` (the two values Gradescope documents);
    the grader's finer status (error, timeout, crashed, missing) starts the test's ``output``
    and is in ``extra_data.statuses``.
    """
    return {
        "score": r.score,
        "max_score": r.max_score,
        "execution_time": round(r.seconds),
        "output": _truncate("\n".join(r.notes), MAX_TEXT) if r.notes else "",
        "tests": [
            {
                "name": f"Exercise {e.id} — {e.title}",
                "number": e.id,
                "score": e.score,
                "max_score": e.max_score,
                "status": "passed" if e.status == "passed" else "failed",
                "output": (f"[{e.status}] " if e.status not in ("passed", "failed") else "")
                + exercise_output(e),
                "visibility": "visible",
            }
            for e in r.exercises
        ],
        "extra_data": {
            "student": r.student,
            "assignment": r.assignment,
            "statuses": {e.id: e.status for e in r.exercises},
            "flags": r.flags,
        },
    }


_CSS = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} .ex{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:4px;color:#fff;font-size:.85rem}
.passed{background:#2e7d32}.failed{background:#c62828}.error{background:#ad1457}
.timeout{background:#ef6c00}.crashed{background:#4e342e}.missing{background:#616161}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;border-radius:4px}
"""


def feedback_html(r: SubmissionResult) -> str:
    """A self-contained feedback page for the student (all student text escaped)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Feedback — {esc(r.student)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Feedback for {esc(r.student)}: {r.score:g} / {r.max_score:g} points</h1>",
        f"<p>Assignment <code>{esc(Path(r.assignment).name)}</code>. Public cases are the ones your "
        "<code>check()</code> runs; hidden cases use other inputs and are only named here.</p>",
    ]
    for e in r.exercises:
        parts.append(
            f"<div class='ex'><h2>Exercise {esc(e.id)} — {esc(e.title)} "
            f"<span class='badge {esc(e.status)}'>{esc(e.status)}</span> "
            f"{e.score:g} / {e.max_score:g}</h2>"
        )
        text = exercise_output(e)
        if text:
            parts.append(f"<pre>{esc(text)}</pre>")
        parts.append("</div>")
    if r.notes:
        notes = "".join(f"<li>{esc(_truncate(n, 400))}</li>" for n in r.notes[:30])
        parts.append(f"<h2>Notes on running your notebook</h2><ul>{notes}</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_submission(out_dir: Path, r: SubmissionResult) -> None:
    """``out_dir/<student>/results.json`` and ``feedback.html``."""
    d = out_dir / r.student
    atomic_write(d / "results.json", json.dumps(results_json(r), indent=1, ensure_ascii=False) + "\n")
    atomic_write(d / "feedback.html", feedback_html(r))


def csv_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``= + - @`` (or tab/CR) gets a ``'``."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_grades(out_dir: Path, results: list[SubmissionResult], exercise_ids: list[str]) -> Path:
    """``grades.csv``: ``student,score,max_score`` then one column per exercise id."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "score", "max_score", *(csv_cell(i) for i in exercise_ids)])
    for r in sorted(results, key=lambda r: r.student):
        by_id = {e.id: e.score for e in r.exercises}
        w.writerow(
            [
                csv_cell(r.student),
                f"{r.score:g}",
                f"{r.max_score:g}",
                *(f"{by_id.get(i, 0):g}" for i in exercise_ids),
            ]
        )
    path = out_dir / "grades.csv"
    atomic_write(path, buf.getvalue())
    return path
