"""The harness that calls the student's object: sent as source into the kernel at judge time.

The grader reads this file and executes it in a fresh namespace inside the student's kernel
(``harness_cell``), so patching or replacing an importable module cannot swap it. It loads
the exercise's ``run`` (a cloudpickle by value, see ``kernelpkg.py``) and the inputs the grader
made, seeds ``random``/``numpy``/``torch`` before each case, calls ``run(student_object,
inputs)`` and ``torch.save``s one record per case (so cases finished before a timeout or a
crash still count). Nothing here decides a score and nothing here knows an expected value:
the reference and the comparison never enter the sandbox, so code that tampers with this
harness can only change its own outputs to something it could have computed anyway.
"""

from __future__ import annotations

import random
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["CASE_SEED_BASE", "harness_cell", "run_cases", "seed_case"]

CASE_SEED_BASE = 20240  # the seed before case i is CASE_SEED_BASE + i


def seed_case(i: int) -> None:
    """Seed python, numpy and torch before case ``i`` (deterministic grading)."""
    import torch

    seed = CASE_SEED_BASE + i
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy ships with the course
        pass


def _where(err: BaseException) -> str:
    """The last traceback frame in the student's code (not the harness, course_utils or torch)."""
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if "course_utils" not in f.filename
        and "site-packages" not in f.filename
        and not f.filename.startswith("<course-grader")
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f"in {f.name}, line {f.lineno}: {(f.line or '').strip()}"[:300]


def _save(record: dict, path: Path) -> None:
    import torch

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


def run_cases(target: str, run_path: str, inputs_path: str, out_dir: str, namespace: dict) -> None:
    """Run the student's ``target`` on every case of ``inputs_path``; write ``out_dir/<i>.pt``."""
    import cloudpickle
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if target not in namespace:
        _save({"missing": True}, out / "missing.pt")
        return
    obj: Any = namespace[target]
    module = str(getattr(obj, "__module__", "") or "")
    if module.startswith("course_utils"):  # e.g. `from course_utils.metrics import sparsity` later on
        _save({"shadowed": f"{module}.{getattr(obj, '__qualname__', target)}"}, out / "missing.pt")
        return
    run = cloudpickle.loads(Path(run_path).read_bytes())
    cases = torch.load(inputs_path, weights_only=True)
    for i, inputs in enumerate(cases):
        seed_case(i)
        t0 = time.perf_counter()
        try:
            value = run(obj, inputs)
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


def harness_cell(target: str, run_path: str, inputs_path: str, out_dir: str) -> str:
    """The code cell the grader executes in the kernel: this file's source, then one call."""
    src = Path(__file__).read_text(encoding="utf-8")
    src = src.replace("from __future__ import annotations\n", "")  # exec'd below, not imported
    call = f"\nrun_cases({target!r}, {run_path!r}, {inputs_path!r}, {out_dir!r}, _NS)\n"
    return (
        f"exec(compile({src + call!r}, '<course-grader>', 'exec'), "
        "{'__name__': '__course_grader__', '_NS': globals()})"
    )
