"""Start an IPython kernel under resource limits (the grader's kernel command).

``python -m course_utils.grading.launcher --memory-mb 2048 -- -f CONNECTION_FILE``

``RLIMIT_DATA`` caps heap and private anonymous mappings (what tensors use). ``RLIMIT_AS``
is not usable: the CUDA build of torch maps ~3 GB of address space just to import
(measured: import fails under 3 GB, works under RLIMIT_DATA = 1 GB). Also: no core dumps,
a cap on the size of files the kernel writes, and one CPU thread for torch/BLAS (set in the
environment by the runner). torch is imported before the student's first cell so the
per-cell timeout measures student code, not the import.
"""

from __future__ import annotations

import argparse
import resource
import sys


def _set(limit: int, value: int) -> None:
    soft, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(limit, (value, value))


def apply_limits(memory_mb: int, file_mb: int) -> None:
    """Set the kernel's rlimits (inherited by any process it starts)."""
    if memory_mb > 0:
        _set(resource.RLIMIT_DATA, memory_mb * 2**20)
    if file_mb > 0:
        _set(resource.RLIMIT_FSIZE, file_mb * 2**20)
    _set(resource.RLIMIT_CORE, 0)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        ours, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    else:
        ours, rest = [], argv
    p = argparse.ArgumentParser(prog="course_utils.grading.launcher")
    p.add_argument("--memory-mb", type=int, default=2048)
    p.add_argument("--file-mb", type=int, default=512)
    args = p.parse_args(ours)
    apply_limits(args.memory_mb, args.file_mb)
    import torch  # noqa: F401  (see module docstring)
    from ipykernel import kernelapp

    sys.argv = [sys.argv[0], *rest]
    app = kernelapp.IPKernelApp.instance()
    app.initialize(rest)
    # `exit()` in a cell would shut the kernel down *after* the cell, so the death would be
    # blamed on a later cell: ignore it (`sys.exit()` only raises SystemExit in a cell).
    app.shell.ask_exit = lambda: None
    app.start()


if __name__ == "__main__":
    main()
