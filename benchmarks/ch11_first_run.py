"""Chapter 11 timings on this machine: the first run (training the three cached models into an
empty cache) and the lesson after it. Prints wall and CPU seconds and the load average; run it
on a quiet machine (the budget: training ≤ 3 min, lesson ≤ 120 s on 2 cores).

    .venv/bin/python benchmarks/ch11_first_run.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (children user + system) seconds of one command."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    return wall, (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, COURSE_CACHE_DIR=cache)
        train = [
            sys.executable,
            "-c",
            "from course_utils import lm\nfor n in lm.LM_RECIPES: lm.pretrained_lm(n, progress=False)",
        ]
        wall, cpu = _run(train, env)
        print(f"first run, training tiny_gpt + two students: {wall:.0f} s wall, {cpu:.0f} s CPU")
        lesson = [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--stdout",
            "--ExecutePreprocessor.timeout=900",
            "notebooks/11_transformer_lm.ipynb",
        ]
        wall, cpu = _run(lesson, env)
        print(f"lesson 11 with a warm cache: {wall:.0f} s wall, {cpu:.0f} s CPU")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
