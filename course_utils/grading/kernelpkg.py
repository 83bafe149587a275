"""What the student's kernel may import during grading: ``course_utils`` without the answers.

Built once per grading process (``kernel_package()``), read-only in every sandbox and first on
the kernel's ``PYTHONPATH``:

- every module of ``course_utils`` the lessons and exercises import (models, data, training,
  metrics, pruning, quantization, ...), byte for byte;
- **not** ``course_utils/specs/`` (the reference implementations, hidden cases and comparisons):
  an empty ``specs`` package stands in its place;
- **not** the grader: ``course_utils/grading/`` holds only ``launcher.py`` (the kernel command);
- ``checks.py`` replaced by a stub: ``check()`` prints that checks are disabled during grading
  and returns ``None`` (the real one would need the specs).

The ``run`` half of each exercise is shipped separately, per exercise and at judge time, as a
cloudpickle *by value* (``pickled_run``): its code and the helpers it calls, never ``reference``
or ``compare`` (``run_closure_names`` lists what a pickle contains, so tests can prove it).
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import pickle
import pickletools
import shutil
import sys
import tempfile
from pathlib import Path

from ..exercise import Exercise

__all__ = ["kernel_package", "pickled_run", "run_closure_names", "CHECK_STUB"]

CHECK_STUB = '''"""Self-checks are disabled while a notebook is graded (the grader runs the real tests)."""

from __future__ import annotations

from typing import Any

__all__ = ["check", "CheckFailed"]


class CheckFailed(AssertionError):
    """Never raised during grading."""


def check(exercise_id: str, obj: Any) -> None:
    """During grading: a no-op (the grader tests ``obj`` itself, on its own inputs)."""
    print(f"check({exercise_id!r}) is disabled during grading; the grader runs the tests.")
'''

_BUILT: dict[str, Path] = {}


def remove_at_exit(path: Path) -> None:
    """Delete ``path`` when this process ends, also as a pool/Dask worker (where atexit does not run)."""
    atexit.register(_rmtree, path)
    multiprocessing.util.Finalize(None, _rmtree, args=(path,), exitpriority=10)


def _rmtree(path: Path) -> None:
    for d in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        try:
            d.chmod(0o755)  # the kernel-side package is read-only; unprivileged users need w to delete
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def _ignore(src: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}


def kernel_package() -> Path:
    """A read-only folder holding the kernel-side ``course_utils`` (built once per process)."""
    if "root" in _BUILT and _BUILT["root"].is_dir():
        return _BUILT["root"]
    import course_utils

    src = Path(course_utils.__file__).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="course-kernelpkg-"))
    remove_at_exit(root)
    dst = root / "course_utils"
    shutil.copytree(
        src, dst, ignore=lambda d, n: _ignore(d, n) | ({"specs", "grading"} if Path(d) == src else set())
    )
    (dst / "specs").mkdir()
    (dst / "specs" / "__init__.py").write_text('"""Not available during grading."""\n')
    (dst / "grading").mkdir()
    (dst / "grading" / "__init__.py").write_text(
        '"""Only the kernel launcher is available during grading."""\n'
    )
    shutil.copy2(src / "grading" / "launcher.py", dst / "grading" / "launcher.py")
    (dst / "checks.py").write_text(CHECK_STUB)
    for p in [root, *root.rglob("*")]:  # read-only for everyone (the sandbox binds it read-only too)
        p.chmod(0o555 if p.is_dir() else 0o444)
    _BUILT["root"] = root
    return root


def _by_value_modules(ex: Exercise) -> list[str]:
    """Modules whose functions travel by value: the specs and the assignment's own file."""
    mods = {
        n for n in sys.modules if n.startswith("course_utils.specs.") or n.startswith("course_grading_spec_")
    }
    mod = getattr(ex.run, "__module__", None)
    if mod:
        mods.add(mod)
    return sorted(m for m in mods if m in sys.modules)


def pickled_run(ex: Exercise) -> bytes:
    """``ex.run`` serialized by value (cloudpickle), loadable without ``course_utils.specs``."""
    import cloudpickle

    mods = [sys.modules[m] for m in _by_value_modules(ex)]
    for m in mods:
        cloudpickle.register_pickle_by_value(m)
    try:
        return cloudpickle.dumps(ex.run, protocol=pickle.DEFAULT_PROTOCOL)
    finally:
        for m in mods:
            try:
                cloudpickle.unregister_pickle_by_value(m)
            except ValueError:
                pass


def run_closure_names(data: bytes) -> set[str]:
    """Every string in a pickle (function and global names, code constants): for audits."""
    out: set[str] = set()
    for _op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            out.add(arg)
    return out
