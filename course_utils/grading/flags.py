"""Flags for the instructor, read from the syntax tree of the submission (never scored).

- Notebook-wide: imports of the grader or the specs (also through ``__import__``/``importlib``
  and strings assembled from pieces: ``"course_" + "utils.sp" + "ecs"``, ``"".join([...])``,
  f-strings of constants), ``sys.modules``, ``builtins``, signals, subprocesses, sockets,
  ``ctypes``, ``setrlimit``, ``/proc``.
- Per exercise: calling the library function the exercise's *reference* uses (e.g.
  ``prune.l1_unstructured`` in 1.2), found automatically from the reference's source, in the
  cells of that exercise's section: a name, an attribute, an import alias or a string.

Flags are shown in ``results.json`` (``extra_data.flags``) and in the summary; they do not
change a score (the sandbox, not the flags, keeps the answers out of reach).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import textwrap
from typing import Any

from ..exercise import Exercise

__all__ = ["notebook_flags", "reference_calls", "exercise_flags", "strings_and_names"]

_PATTERNS = {  # substring of a folded string / dotted name → what it means
    "course_utils.grading": "imports the grader",
    "course_utils.specs": "imports the exercise specs (reference solutions)",
    "get_exercise": "looks up exercise specs",
    "_REGISTRY": "touches the exercise registry",
    "sys.modules": "patches sys.modules",
    "builtins": "patches builtins",
    "setrlimit": "changes resource limits",
    "os.kill": "sends signals",
    "os.killpg": "sends signals",
    "subprocess": "starts processes",
    "os.fork": "starts processes",
    "ctypes": "loads native code",
    "socket": "opens sockets",
    "/proc": "reads /proc",
}


_UTILITIES = (
    "torch.nn.functional",
    "torch.functional",
    "torch.random",
    "course_utils.data",
    "course_utils.metrics",
    "course_utils.training",
)


def _fold(node: ast.AST) -> str | None:
    """The value of a string expression built only from constants, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        a, b = _fold(node.left), _fold(node.right)
        if isinstance(node.op, ast.Add) and a is not None and b is not None:
            return a + b
        return None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                s = _fold(v.value)
                if s is None:
                    return None
                parts.append(s)
            else:
                s = _fold(v)
                if s is None:
                    return None
                parts.append(s)
        return "".join(parts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], (ast.List, ast.Tuple))
    ):
        sep = _fold(node.func.value)
        items = [_fold(e) for e in node.args[0].elts]
        if sep is not None and all(i is not None for i in items):
            return sep.join(items)  # type: ignore[arg-type]
    return None


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return None


def strings_and_names(source: str) -> set[str] | None:
    """Dotted names, attribute names, imported modules and folded strings of ``source``."""
    try:
        tree = ast.parse(_strip_magics(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out |= {a.name, a.asname or ""}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            out.add(mod)
            for a in node.names:
                out |= {f"{mod}.{a.name}", a.name}
        elif isinstance(node, (ast.Name, ast.Attribute)):
            d = _dotted(node)
            if d:
                out.add(d)
            if isinstance(node, ast.Attribute):
                out.add(node.attr)
        else:
            s = _fold(node)
            if s is not None and len(s) < 500:
                out.add(s)
    out.discard("")
    return out


def _strip_magics(source: str) -> str:
    """IPython magics (``%time``, ``!ls``) are not Python: blank them for the parser."""
    lines = []
    for ln in source.splitlines():
        s = ln.lstrip()
        lines.append("" if s.startswith(("%", "!")) else ln)
    return "\n".join(lines)


def notebook_flags(cells: list[tuple[str, str]]) -> list[str]:
    """``cells``: ``(cell name, source)``; one line per suspicious construct."""
    out: list[str] = []
    for name, src in cells:
        found = strings_and_names(src)
        if found is None:
            continue
        hits = sorted({(what, pat) for pat, what in _PATTERNS.items() for s in found if pat in s})
        for what, pat in hits:
            out.append(f"{name} {what} (`{pat}`)")
    return out


@functools.lru_cache(maxsize=256)
def _reference_calls(fn: Any, depth: int = 0) -> tuple[str, ...]:
    """Library calls in ``fn``, in functions it closes over (wrappers such as
    ``paired_reference(_l1_reference)``) and in same-module helpers it calls (3 levels)."""
    fn = inspect.unwrap(fn) if callable(fn) else fn
    found: set[str] = set()
    if depth < 3:
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                inner = cell.cell_contents
            except ValueError:
                continue
            if inspect.isfunction(inner):
                found |= set(_reference_calls(inner, depth + 1))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return tuple(sorted(found))
    glb = dict(getattr(fn, "__globals__", {}))
    for node in ast.walk(tree):  # imports inside the function: `from ..quantization import static_ptq`
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            try:
                pkg = glb.get("__package__") or ""
                mod = importlib.import_module("." * node.level + node.module, pkg if node.level else None)
            except Exception:
                continue
            for a in node.names:
                glb[a.asname or a.name] = getattr(mod, a.name, None)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        if not dotted:
            continue
        head, *rest = dotted.split(".")
        obj = glb.get(head)
        for part in rest:
            obj = getattr(obj, part, None)
        if obj is None or not inspect.isfunction(obj):
            continue
        mod = getattr(obj, "__module__", "") or ""
        if mod == fn.__module__ and depth < 3 and obj is not fn:  # a helper of the spec
            found |= set(_reference_calls(obj, depth + 1))
            continue
        if mod.startswith(_UTILITIES):
            continue  # building blocks every solution may use (F.relu, seeds, data, sizes)
        if mod.startswith("torch") or (
            mod.startswith("course_utils")
            and not mod.startswith(("course_utils.specs", "course_utils.exercise"))
        ):
            found.add(f"{mod}.{obj.__name__}")
    return tuple(sorted(found))


def reference_calls(ex: Exercise) -> list[str]:
    """Library functions (torch or course_utils, written in Python) that ``ex.reference`` calls."""
    return list(_reference_calls(ex.reference))


def exercise_flags(ex: Exercise, cells: list[tuple[str, str]]) -> list[str]:
    """Flags for the cells of ``ex``'s section that use a function its reference uses."""
    targets = {full.rsplit(".", 1)[1]: full for full in reference_calls(ex)}
    out = []
    for name, src in cells:
        found = strings_and_names(src) or set()
        words = {w.rsplit(".", 1)[-1] for w in found} | found
        for short, full in sorted(targets.items()):
            if short in words and (short != ex.target or any(w.endswith(f".{short}") for w in found)):
                out.append(f"{name} (exercise {ex.id}) uses `{full}`, which the grader's reference uses")
    return out
