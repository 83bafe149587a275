"""Grade N copies of a chapter's solution sandboxed and with --no-sandbox, at --jobs 1 and 2.

    .venv/bin/python benchmarks/grade_bench.py [--chapter 1] [--copies 10] [--lean]

A script that prints measured numbers (never a timed test). Each copy is a full grading:
its own kernel (in its own bubblewrap sandbox, or not), the whole notebook, then the hidden
tests. The four runs are interleaved (sandboxed and not, for each --jobs) so a change of the
machine's load hits both sides; the table gives seconds per submission and the sandbox's
overhead. Every copy must score full marks, otherwise the numbers are not comparable and the
script says so.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.exercise import resolve_chapter  # noqa: E402
from course_utils.grading.cli import main as grade  # noqa: E402


def run(assignment: str, jobs: int, sandbox: str, tmp: Path, subs: Path) -> tuple[float, int]:
    out = tmp / f"out-jobs{jobs}-{sandbox}"
    t0 = time.perf_counter()
    rc = grade(
        [assignment, str(subs), "--out", str(out), "--jobs", str(jobs), "--sandbox", sandbox, "--quiet"]
    )
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"grading failed with exit status {rc}")
    rows = list(csv.DictReader((out / "grades.csv").open()))
    full = sum(float(r["score"]) == float(r["max_score"]) for r in rows)
    return seconds, full


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chapter", default="1")
    p.add_argument("--copies", type=int, default=10)
    p.add_argument(
        "--lean",
        action="store_true",
        help="grade the grader tests' small 3-exercise notebook instead of a chapter solution "
        "(isolates the per-kernel cost of the sandbox)",
    )
    args = p.parse_args()
    if args.lean:
        sys.path.insert(0, str(ROOT / "tests"))
        import nbformat
        from fixtures.grading_subs import SPEC, notebook

        assignment, label = str(SPEC), "the grader tests' 3-exercise notebook (tests/fixtures)"
        data = nbformat.writes(notebook()).encode()
    else:
        assignment = resolve_chapter(args.chapter)
        solution = ROOT / "solutions" / f"{assignment}.ipynb"
        if not solution.exists():
            print(f"No solution notebook {solution.relative_to(ROOT)} yet.")
            return 1
        label, data = f"solutions/{assignment}.ipynb", solution.read_bytes()
    from course_utils.grading.sandbox import bwrap_problem, cgroup_backend

    if bwrap_problem():
        print(f"No sandbox on this machine: {bwrap_problem()}")
        return 1
    load0 = os.getloadavg()
    print(
        f"Grading {args.copies} copies of {label} on {os.cpu_count()} CPUs, one torch thread per "
        f"kernel; sandbox limits: {cgroup_backend()}. Load average before: "
        f"{load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} (1/5/15 min). Order A B B A per --jobs."
    )
    secs: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as t:
        tmp = Path(t)
        subs = tmp / "subs"
        subs.mkdir()
        for i in range(args.copies):
            (subs / f"student_{i:02d}.ipynb").write_bytes(data)
        for jobs in (1, 2):
            for k, sandbox in enumerate(("none", "bwrap", "bwrap", "none")):  # A B B A: load drift cancels
                seconds, full = run(assignment, jobs, sandbox, tmp / str(k), subs)
                secs.setdefault((jobs, sandbox), []).append(seconds / args.copies)
                if full != args.copies:
                    print(
                        f"  warning: {full}/{args.copies} full marks with --jobs {jobs} --sandbox {sandbox}"
                    )
    print("\n| --jobs | --no-sandbox s/submission | sandboxed s/submission | sandbox overhead |")
    print("| --- | --- | --- | --- |")
    for jobs in (1, 2):
        a, b = (sum(secs[jobs, m]) / 2 for m in ("none", "bwrap"))
        print(f"| {jobs} | {a:.2f} | {b:.2f} | {100 * (b / a - 1):+.0f} % |")
    load1 = os.getloadavg()
    print(
        f"\nLoad average after: {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}. "
        "On a loaded machine only the ratios measured in this run mean anything."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
