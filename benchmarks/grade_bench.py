"""Grade N copies of a chapter's solution with --jobs 1 and --jobs 2; print the speedup.

    .venv/bin/python benchmarks/grade_bench.py [--chapter 1] [--copies 20]

A script that prints measured numbers (never a timed test). Each copy is a full grading:
its own kernel, the whole notebook, then the hidden tests. Every copy must score full
marks, otherwise the numbers are not comparable and the script says so.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.exercise import resolve_chapter  # noqa: E402
from course_utils.grading.cli import main as grade  # noqa: E402


def run(chapter: str, copies: int, jobs: int, tmp: Path, subs: Path) -> tuple[float, int]:
    out = tmp / f"out-jobs{jobs}"
    t0 = time.perf_counter()
    rc = grade([chapter, str(subs), "--out", str(out), "--jobs", str(jobs), "--quiet"])
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"grading failed with exit status {rc}")
    rows = list(csv.DictReader((out / "grades.csv").open()))
    full = sum(float(r["score"]) == float(r["max_score"]) for r in rows)
    return seconds, full


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chapter", default="1")
    p.add_argument("--copies", type=int, default=20)
    args = p.parse_args()
    slug = resolve_chapter(args.chapter)
    solution = ROOT / "solutions" / f"{slug}.ipynb"
    if not solution.exists():
        print(f"No solution notebook {solution.relative_to(ROOT)} yet.")
        return 1
    print(
        f"Grading {args.copies} copies of solutions/{slug}.ipynb on {os.cpu_count()} CPUs "
        f"(load average now {os.getloadavg()[0]:.1f})."
    )
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as t:
        tmp = Path(t)
        subs = tmp / "subs"
        subs.mkdir()
        for i in range(args.copies):
            shutil.copy(solution, subs / f"student_{i:02d}.ipynb")
        results = {}
        for jobs in (1, 2):
            seconds, full = run(slug, args.copies, jobs, tmp, subs)
            results[jobs] = seconds
            print(
                f"--jobs {jobs}: {seconds:.1f} s total, {seconds / args.copies:.2f} s per submission, "
                f"{full}/{args.copies} full marks"
            )
            if full != args.copies:
                print("  warning: not every copy scored full marks; see the results.json files.")
    print(f"speedup of --jobs 2 over --jobs 1: {results[1] / results[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
