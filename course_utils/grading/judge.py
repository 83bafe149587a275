"""Judging in a separate, bounded process: load a student's result file and run ``compare``.

Everything a student's output can do to the process that reads it happens here, not in the
grading worker: ``torch.load(weights_only=True)`` of the result (after a cap on its
*uncompressed* size), ``compare`` (which may load a TorchScript archive and time it), and the
``repr``/``str`` of the mismatch. The judge runs with ``RLIMIT_DATA``, in its own bubblewrap
sandbox when the grader is sandboxed (read-only file system, no network), and each call has a
wall-clock budget (``Exercise.timeout`` or ``--timeout``): a judge that overruns, crashes or
runs out of memory is killed and restarted, and that student's case becomes ``error``.

Protocol (trusted both ways: the worker and the judge are grader code): length-prefixed
pickles over the judge's stdin/stdout. ``("expect", key, payload)`` stores the expected values
and inputs of one exercise (made by the worker, once per batch); ``("judge", key, i, data,
hidden, index, memory_mb)`` returns the ``CaseResult`` fields for case ``i``.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["Judge", "judge_bytes", "load_result", "clean_text"]

MAX_UNCOMPRESSED = 256 * 2**20  # bytes a result may expand to when loaded
MAX_MESSAGE = 2000


def clean_text(s: Any, limit: int = MAX_MESSAGE) -> str:
    """``str(s)`` bounded, with lone surrogates and control characters escaped."""
    try:
        text = s if isinstance(s, str) else str(s)
    except Exception as err:  # a __str__ that raises
        text = f"<unprintable {type(s).__name__}: {type(err).__name__}>"
    text = text[: limit + 1]
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "?", text)
    return text if len(text) <= limit else text[: limit - 14] + " … (truncated)"


def load_result(data: bytes, max_uncompressed: int = MAX_UNCOMPRESSED) -> Any:
    """A result record from the bytes of a case file, or an error record (never raises)."""
    import torch

    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
        except Exception as err:
            return {"ok": False, "kind": "unloadable", "message": clean_text(err)}
        total = sum(max(i.file_size, 0) for i in infos)
        if total > max_uncompressed or len(infos) > 100_000:
            return {"ok": False, "kind": "too_big", "message": f"{total / 2**20:.0f} MiB once decompressed"}
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except RecursionError:
        return {"ok": False, "kind": "too_big", "message": "nested too deeply"}
    except Exception as err:
        return {"ok": False, "kind": "unloadable", "message": clean_text(err)}


def judge_bytes(
    compare: Any, data: bytes, expected: Any, inputs: Any, hidden: bool, index: int, memory_mb: int
) -> dict:
    """The fields of a ``CaseResult`` for one case's result bytes (runs in the judge)."""
    rec = load_result(data)
    seconds = 0.0
    if isinstance(rec, dict):
        try:
            seconds = float(rec.get("seconds", 0.0))
        except Exception:
            seconds = 0.0
    if not (seconds >= 0.0 and seconds < 1e9):
        seconds = 0.0

    def case(status: str, msg: str) -> dict:
        return {
            "index": index,
            "hidden": hidden,
            "status": status,
            "message": clean_text(msg),
            "seconds": seconds,
        }

    if not isinstance(rec, dict) or "ok" not in rec:
        return case("error", "the output file was not written by the grader")
    if rec["ok"] is True and "value" in rec:
        try:
            note = compare(rec["value"], expected, inputs)
        except AssertionError as err:
            return case("failed", clean_text(err))
        except RecursionError:
            return case("failed", "your result is nested too deeply to compare")
        except Exception as err:
            return case("failed", f"{type(err).__name__}: {clean_text(err)}")
        # A measuring compare may return what it measured (e.g. the capstone's report card).
        return case("passed", note if isinstance(note, str) else "")
    kind = rec.get("kind")
    if kind == "not_implemented":
        msg = "not implemented yet (`raise NotImplementedError()` is still there)"
    elif kind == "raised":
        where = f" {clean_text(rec.get('where', ''), 300)}" if rec.get("where") else ""
        typ = clean_text(rec.get("type", "an exception"), 100)
        msg = f"your code raised {typ}"
        if typ == "MemoryError" or "can't allocate memory" in clean_text(rec.get("message", "")):
            msg += f" (the memory limit is {memory_mb} MiB)"
        msg += (
            f":{where}"
            if hidden
            else f": {clean_text(rec.get('message', ''), 500)}" + (f"\n  {where}" if where else "")
        )
    elif kind == "unserializable":
        msg = (
            f"your result cannot be sent back to the grader ({clean_text(rec.get('type'), 100)}: "
            f"{clean_text(rec.get('message'), 500)})"
        )
    elif kind == "too_big":
        msg = f"your result is too large to grade ({clean_text(rec.get('message'), 200)})"
    elif kind == "unloadable":
        msg = "your result contains something other than tensors, numbers, strings, lists or dicts"
        m = re.search(r"GLOBAL ([\w.]+)", str(rec.get("message", "")))
        msg += f" (found {m.group(1)})" if m else ""
    else:
        msg = "the output file was not written by the grader"
    return case("error", msg)


# ---- the judge process -------------------------------------------------------------------------


def _send(f: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


def _recv(f: Any) -> Any:
    head = f.read(8)
    if len(head) < 8:
        raise EOFError
    (n,) = struct.unpack("<Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


def serve(memory_mb: int) -> None:
    """The judge's main loop (``python -m course_utils.grading.judge MEMORY_MB``)."""
    from .launcher import apply_limits

    apply_limits(memory_mb, 64)
    import torch

    torch.set_num_threads(1)
    from .assignment import find_exercise

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # prints in compare must not corrupt the protocol
    store: dict[str, tuple[Any, Any, Any]] = {}
    while True:
        try:
            msg = _recv(inp)
        except EOFError:
            return
        if msg[0] == "expect":
            _, key, assignment, ex_id, payload = msg
            expected, inputs = torch.load(io.BytesIO(payload), weights_only=False)
            store[key] = (find_exercise(assignment, ex_id).compare, expected, inputs)
            _send(out, ("ok",))
        elif msg[0] == "judge":
            _, key, i, data, hidden, index, mem = msg
            compare, expected, inputs = store[key]
            res = judge_bytes(compare, data, copy.deepcopy(expected[i]), inputs[i], hidden, index, mem)
            _send(out, ("ok", res))


class JudgeDied(RuntimeError):
    """The judge process overran its time, crashed or ran out of memory."""


class Judge:
    """A judge process owned by one grading worker (started lazily, restarted after a failure)."""

    def __init__(self, memory_mb: int, prefix: list[str] | None = None) -> None:
        self.memory_mb, self.prefix = memory_mb, prefix or []
        self.proc: subprocess.Popen | None = None
        self.known: set[str] = set()

    def _start(self) -> None:
        import course_utils

        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        env["PYTHONPATH"] = str(Path(course_utils.__file__).resolve().parents[1])
        cmd = [*self.prefix, sys.executable, "-m", "course_utils.grading.judge", str(self.memory_mb)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.known = set()

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(5)
            except Exception:
                pass
            self.proc = None

    def _call(self, msg: Any, timeout: float) -> Any:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _send(self.proc.stdin, msg)
            fd = self.proc.stdout.fileno()
            deadline = time.monotonic() + timeout
            buf = b""
            need = 8
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise JudgeDied("timeout")
                chunk = os.read(fd, max(need - len(buf), 1 << 16))
                if not chunk:
                    raise JudgeDied("crashed")
                buf += chunk
                if len(buf) >= 8 and need == 8:
                    need = 8 + struct.unpack("<Q", buf[:8])[0]
            return pickle.loads(buf[8:need])
        except (BrokenPipeError, OSError, EOFError) as err:
            self.close()
            raise JudgeDied("crashed") from err
        except JudgeDied:
            self.close()
            raise

    def judge(
        self,
        key: str,
        assignment: str,
        ex_id: str,
        payload: bytes,
        i: int,
        data: bytes,
        hidden: bool,
        index: int,
        timeout: float,
    ) -> dict:
        """CaseResult fields for case ``i`` of exercise ``key`` (``payload`` = expected + inputs)."""
        from .results import CaseResult  # noqa: F401  (the fields returned match it)

        try:
            if key not in self.known:
                self._call(("expect", key, assignment, ex_id, payload), max(timeout, 60.0))
                self.known.add(key)
            return self._call(("judge", key, i, data, hidden, index, self.memory_mb), timeout)[1]
        except JudgeDied as err:
            what = "took longer than" if str(err) == "timeout" else "crashed or ran out of memory within"
            return {
                "index": index,
                "hidden": hidden,
                "status": "error",
                "message": f"judging your result {what} the limits ({timeout:.0f} s, {self.memory_mb} MiB)",
                "seconds": 0.0,
            }


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 2048)
