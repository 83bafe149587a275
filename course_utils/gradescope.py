"""Gradescope autograder bundle: ``python -m course_utils gradescope CHAPTER --out autograder.zip``.

The zip holds what Gradescope runs (its documented layout, rooted at ``/autograder``):

- ``setup.sh`` — installs Python, bubblewrap and the course from ``requirements.lock`` into
  ``/autograder/venv`` and registers the course kernel (run once when the image is built);
- ``run_autograder`` — grades the ``.ipynb`` in ``/autograder/submission`` with the course
  grader and writes ``/autograder/results/results.json``;
- ``course/`` — the ``course_utils`` package, ``pyproject.toml``, ``requirements.lock``.

Gradescope already runs each submission in its own container, where user namespaces may be
unavailable: grading uses the bubblewrap sandbox when it can start and otherwise grades without
it, saying so in the results' ``output``. ``GRADESCOPE_ROOT`` (default ``/autograder``) and
``COURSE_PYTHON`` (default ``$GRADESCOPE_ROOT/venv/bin/python``) override the paths (tests).
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

from .exercise import chapter_exercises, resolve_chapter

__all__ = ["build_bundle", "run", "SETUP_SH", "RUN_AUTOGRADER"]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
ROOT="${GRADESCOPE_ROOT:-/autograder}"
if command -v apt-get >/dev/null; then
  apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip bubblewrap
fi
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q --upgrade pip
"$ROOT/venv/bin/pip" install -q -r "$ROOT/source/course/requirements.lock"
"$ROOT/venv/bin/pip" install -q --no-deps "$ROOT/source/course"
"$ROOT/venv/bin/python" -m course_utils kernel
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission.
set -euo pipefail
ROOT="${{GRADESCOPE_ROOT:-/autograder}}"
PY="${{COURSE_PYTHON:-$ROOT/venv/bin/python}}"
mkdir -p "$ROOT/results"
exec "$PY" -m course_utils gradescope-run {chapter} --submission "$ROOT/submission" \\
  --results "$ROOT/results/results.json"
"""

_EXCLUDE = ("__pycache__", ".pyc")


def build_bundle(chapter: str | int, out: str | Path, root: str | Path = ".") -> Path:
    """Write the autograder zip for one chapter; returns its path."""
    slug = resolve_chapter(chapter)
    if not chapter_exercises(slug):
        raise ValueError(f"Chapter {slug} has no exercises to grade.")
    root, out = Path(root), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def add(z: zipfile.ZipFile, name: str, text: str, executable: bool = False) -> None:
        info = zipfile.ZipInfo(name)
        info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, text)

    with zipfile.ZipFile(out, "w") as z:
        add(z, "setup.sh", SETUP_SH, executable=True)
        add(z, "run_autograder", RUN_AUTOGRADER.format(chapter=slug), executable=True)
        for name in ("pyproject.toml", "requirements.lock", "README.md"):
            add(z, f"course/{name}", (root / name).read_text(encoding="utf-8"))
        for path in sorted((root / "course_utils").rglob("*")):
            if path.is_file() and not any(x in str(path) for x in _EXCLUDE):
                add(z, f"course/{path.relative_to(root).as_posix()}", path.read_text(encoding="utf-8"))
    return out


def _sandbox_note() -> str:
    """What ``--sandbox auto`` chooses on this machine, in the grader's words."""
    from .grading.sandbox import choose

    return "Grading: " + choose("auto")[1]


def _find_notebook(submission: Path, slug: str) -> Path | None:
    found = sorted(p for p in submission.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return next((p for p in found if p.stem == slug), found[0] if found else None)


def run(chapter: str, submission: str | Path, results: str | Path) -> dict:
    """Grade the submission folder's notebook; write and return ``results.json``."""
    from .grading import grade_submission
    from .grading.report import results_json

    slug = resolve_chapter(chapter)
    submission, results = Path(submission), Path(results)
    nb = _find_notebook(submission, slug)
    if nb is None:
        total = sum(e.points for e in chapter_exercises(slug))
        data = {
            "score": 0,
            "max_score": total,
            "output": f"No .ipynb found in your submission: upload {slug}.ipynb.",
            "tests": [],
        }
    else:
        r = grade_submission(nb, slug, sandbox="auto", student="submission")
        data = results_json(r)
        said = [n for n in r.notes if "sandbox" in n.lower()]
        sandbox = said[0] if said else _sandbox_note()
        rest = [line for line in data.get("output", "").splitlines() if line and line not in said]
        data["output"] = "\n".join([sandbox, *rest])
        data.setdefault("extra_data", {})["sandbox"] = sandbox
    results.parent.mkdir(parents=True, exist_ok=True)
    tmp = results.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, results)
    return data
