"""``python -m course_utils grade ASSIGNMENT PATH... --out DIR [--jobs N] [--timeout S]``.

Exit 0 when grading completed (whatever the students scored); exit 2 with a one-line
``grade: error: ...`` message for instructor misuse (unknown assignment, no submissions,
unwritable ``--out``, unreachable scheduler).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

from .results import STATUSES, Limits, SubmissionResult

__all__ = ["main", "collect_submissions", "safe_student_id", "UsageError"]

RESERVED = {"grades.csv", "grades", "results.json", "feedback.html", "summary.txt"}


class UsageError(Exception):
    """Instructor misuse: reported as one line, exit status 2."""


def _default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def safe_student_id(stem: str) -> str:
    """A student id usable as a folder name in ``--out``: no separators, no ``..``, no hidden
    name, not an output file's name, valid UTF-8 (undecodable bytes are escaped), ≤ 100 chars."""
    s = stem.encode("utf-8", "backslashreplace").decode("utf-8")
    s = re.sub(r"[^\w.@+-]", "_", s).lstrip(".")[:100]
    if not s:
        s = "student"
    if s.lower() in RESERVED or s.lower().startswith((".grade", "grades.csv")):
        s = f"student-{s}"
    return s


def collect_submissions(paths: list[str], notes: list[str] | None = None) -> list[tuple[str, Path]]:
    """``(student id, path)`` for every file given and every ``*.ipynb`` in folders given
    (also ``.x.ipynb``, never macOS's ``._x.ipynb`` resource forks).

    Ids are ``safe_student_id(file stem)``; when two submissions get the same id, the later one
    is graded as ``id~2`` (``~3``, ...) and a line is added to ``notes``.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(
                f
                for f in p.glob("*.ipynb")
                if (f.is_file() or f.is_symlink()) and not f.name.startswith("._")
            )
        elif p.is_file() or p.is_symlink():
            found.append(p)
        else:
            raise UsageError(f"{raw}: no such file or folder.")
    if not found:
        raise UsageError("no submissions: give .ipynb files or folders that contain some.")
    items: dict[str, Path] = {}
    seen: set[Path] = set()
    for f in found:
        key = Path(os.path.abspath(f))
        if key in seen:  # the same file given twice
            continue
        seen.add(key)
        base = safe_student_id(f.name[: -len(".ipynb")] if f.name.endswith(".ipynb") else f.stem)
        sid, n = base, 1
        while sid.lower() in {k.lower() for k in items}:
            n += 1
            sid = f"{base}~{n}"
        if sid != base and notes is not None:
            notes.append(
                f"student id {base!r} is used by {items[base] if base in items else 'another file'} "
                f"and {f}: the latter is graded as {sid!r}."
            )
        items[sid] = f
    return sorted(items.items())


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".grade-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"cannot write to --out {out}: {err.strerror or err}.") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m course_utils grade",
        description="Grade submitted notebooks: each runs in its own kernel with time and memory limits.",
    )
    p.add_argument(
        "assignment", help="chapter number or slug (3, 03_custom_pruning_methods) or a spec .py file"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="submitted .ipynb files or folders of them")
    p.add_argument("--out", required=True, type=Path, help="output folder (grades.csv, <student>/...)")
    p.add_argument("--jobs", type=int, default=_default_jobs(), help="parallel submissions (default: CPUs)")
    p.add_argument(
        "--timeout", type=float, default=Limits.cell_timeout, help="seconds per cell and per exercise's tests"
    )
    p.add_argument(
        "--submission-timeout", type=float, default=Limits.submission_timeout, help="seconds per submission"
    )
    p.add_argument(
        "--memory-mb", type=int, default=Limits.memory_mb, help="memory limit of each kernel (MiB)"
    )
    p.add_argument(
        "--sandbox",
        choices=("bwrap", "auto", "none"),
        default="bwrap",
        help="bwrap: each kernel in a bubblewrap sandbox, refuse when it cannot start (default); "
        "auto: the sandbox when it can start, else none (said in every results.json); none: no sandbox",
    )
    p.add_argument(
        "--no-sandbox", action="store_true", help="same as --sandbox none (prints what is not protected)"
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask scheduler (tcp://host:8786) instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _summary(results: list[SubmissionResult], ids: list[str], seconds: float) -> str:
    n = len(results)
    lines = [f"Graded {n} submission(s) in {seconds:.1f} s ({seconds / max(n, 1):.1f} s per submission)."]
    if n:
        mean = sum(r.score for r in results) / n
        lines.append(f"Mean score {mean:.2f} / {results[0].max_score:g}.")
    for i in ids:
        c = Counter(e.status for r in results for e in r.exercises if e.id == i)
        lines.append(f"  {i}: " + ", ".join(f"{s} {c[s]}" for s in STATUSES if c[s]))
    flagged = [r.student for r in results if r.flags]
    if flagged:
        lines.append(f"Flagged for a look (see extra_data.flags in results.json): {', '.join(flagged)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .assignment import AssignmentError, load_assignment
    from .cluster import map_dask, map_local
    from .report import write_grades, write_submission

    try:
        name, exercises = load_assignment(args.assignment)
    except AssignmentError as err:
        raise UsageError(str(err)) from None
    if args.jobs < 1 or args.timeout <= 0 or args.submission_timeout <= 0 or args.memory_mb < 256:
        raise UsageError("--jobs must be >= 1, timeouts > 0 and --memory-mb >= 256.")
    notes: list[str] = []
    items = collect_submissions(args.paths, notes)
    _check_out(args.out)
    mode = "none" if args.no_sandbox else args.sandbox
    from .sandbox import UNPROTECTED, SandboxUnavailable, choose

    if not args.scheduler:  # Dask workers check on their side (each submission says so)
        try:
            _, note = choose(mode)
        except SandboxUnavailable as err:
            raise UsageError(
                f"cannot sandbox student code here: {err}. Install bubblewrap, or pass --sandbox auto / "
                "--no-sandbox to grade without a sandbox (see docs/GRADING.md)."
            ) from None
        if not args.quiet or mode != "bwrap":
            print(f"grade: {note}.", file=sys.stderr)
    if mode == "none":
        print(f"grade: warning: {UNPROTECTED}", file=sys.stderr)
    for n in notes:
        print(f"grade: note: {n}", file=sys.stderr)
    limits = Limits(
        cell_timeout=args.timeout,
        submission_timeout=args.submission_timeout,
        memory_mb=args.memory_mb,
        sandbox=mode,
    )
    if args.scheduler:
        try:
            from distributed import Client

            Client(args.scheduler, timeout="10s").close()
        except Exception as err:
            raise UsageError(
                f"cannot connect to the Dask scheduler at {args.scheduler} ({type(err).__name__})."
            ) from None
        stream = map_dask(items, name, limits, args.scheduler)
    else:
        stream = map_local(items, name, limits, min(args.jobs, len(items)))
    from tqdm.auto import tqdm

    t0 = time.monotonic()
    results: list[SubmissionResult] = []
    for r in tqdm(stream, total=len(items), desc="grading", unit="nb", disable=args.quiet):
        try:
            write_submission(args.out, r)
        except Exception as err:  # one student's report must never stop the others
            print(
                f"grade: could not write the report of {r.student!r}: {type(err).__name__}", file=sys.stderr
            )
        results.append(r)
    ids = [e.id for e in exercises]
    path = write_grades(args.out, results, ids)
    if not args.quiet:
        print(_summary(results, ids, time.monotonic() - t0))
        print(f"Wrote {path} and {len(results)} results.json / feedback.html.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m course_utils grade``; returns the exit status."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0) or an argparse usage error (2)
        return int(exc.code or 0)
    try:
        return run(args)
    except UsageError as err:
        print(f"grade: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grade: interrupted; files already written are complete.", file=sys.stderr)
        return 130
