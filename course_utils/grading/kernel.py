"""What runs inside the student's kernel during grading: call the student's object on inputs.

The grader writes the inputs with ``torch.save``; ``run_exercise`` loads them with
``torch.load(weights_only=True)``, seeds ``torch``/``numpy``/``random`` before each case,
calls ``exercise.run(student_object, inputs)`` and saves one file per case, so the cases
finished before a timeout or a crash still count. Nothing here decides a score: the grader
loads these files in its own process and runs ``reference`` and ``compare`` there, so a
student who patches this module, torch or builtins can only change their own outputs.
"""

from __future__ import annotations

import random
import time
import traceback
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_exercise", "seed_case", "CASE_SEED_BASE"]

CASE_SEED_BASE = 20240  # the seed before case i is CASE_SEED_BASE + i


def seed_case(i: int) -> None:
    """Seed python, numpy and torch before case ``i`` (deterministic grading)."""
    seed = CASE_SEED_BASE + i
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy ships with the course
        pass


def _where(err: BaseException) -> str:
    """The last traceback frame in the student's code (not course_utils, not torch)."""
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if "course_utils" not in f.filename and "site-packages" not in f.filename
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f"in {f.name}, line {f.lineno}: {(f.line or '').strip()}"[:300]


def _save(record: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(record, tmp)
    except Exception as err:  # unpicklable output (lambda, open file, ...)
        record = {
            "ok": False,
            "kind": "unserializable",
            "type": type(err).__name__,
            "message": str(err)[:500],
            "seconds": record.get("seconds", 0.0),
        }
        torch.save(record, tmp)
    tmp.replace(path)


def run_exercise(assignment: str, exercise_id: str, inputs_path: str, out_dir: str, namespace: dict) -> None:
    """Run the student's ``target`` on every case of ``inputs_path``; write ``out_dir/<i>.pt``."""
    from .assignment import find_exercise

    ex = find_exercise(assignment, exercise_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ex.target not in namespace:
        _save({"missing": True}, out / "missing.pt")
        return
    obj: Any = namespace[ex.target]
    module = str(getattr(obj, "__module__", "") or "")
    if module.startswith("course_utils"):  # e.g. `from course_utils.metrics import sparsity` later on
        _save({"shadowed": f"{module}.{getattr(obj, '__qualname__', ex.target)}"}, out / "missing.pt")
        return
    cases = torch.load(inputs_path, weights_only=True)
    for i, inputs in enumerate(cases):
        seed_case(i)
        t0 = time.perf_counter()
        try:
            value = ex.run(obj, inputs)
            record: dict = {"ok": True, "value": value}
        except NotImplementedError:
            record = {"ok": False, "kind": "not_implemented"}
        except BaseException as err:  # noqa: B036 - SystemExit/KeyboardInterrupt from student code too
            record = {
                "ok": False,
                "kind": "raised",
                "type": type(err).__name__,
                "message": str(err)[:2000],
                "where": _where(err),
            }
        record["seconds"] = time.perf_counter() - t0
        _save(record, out / f"{i}.pt")
