"""What an exercise is, and the registry of all of them.

An exercise is tested the same way by the notebook self-check and by the grader:

1. ``make_case(seed)`` builds the inputs (tensors, numbers, strings, lists, dicts);
2. ``run(student_object, inputs)`` calls the student's code and returns plain values;
   in grading this is the only step that runs in the student's kernel;
3. ``reference(inputs)`` computes the expected values with PyTorch itself;
4. ``compare(got, expected, inputs)`` raises ``AssertionError`` with a helpful message.

Steps 1, 3 and 4 run in the grader's own process, so student code cannot change them.
Inputs and outputs must survive ``torch.save`` / ``torch.load(weights_only=True)``.
Public seeds are used by ``check()``; the grader adds hidden seeds and edge cases.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "CHAPTERS",
    "Exercise",
    "assert_same",
    "all_exercises",
    "chapter_exercises",
    "get_exercise",
    "resolve_chapter",
]

CHAPTERS: dict[int, str] = {
    1: "01_pruning_theory",
    2: "02_masks_and_reparameterization",
    3: "03_custom_pruning_methods",
    4: "04_fusion",
    5: "05_qconfig_and_ptq",
    6: "06_qat",
    7: "07_amp",
    8: "08_capstone",
    9: "09_pitfalls",
    10: "10_real_cnns",
    11: "11_transformer_lm",
}


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor(shape={tuple(x.shape)}, dtype={x.dtype})"
    return f"{type(x).__name__} {x!r}"[:200]


def assert_same(
    got: Any,
    expected: Any,
    inputs: dict | None = None,
    *,
    path: str = "result",
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Recursively compare ``got`` with ``expected``; tensors with ``torch.testing.assert_close``.

    The message names where they differ (``result['mask'][2]``), the shapes or types, and
    the first mismatching entries.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{path}: expected a tensor, got {_describe(got)}.")
        if got.shape != expected.shape:
            raise AssertionError(f"{path}: shape {tuple(got.shape)} but expected {tuple(expected.shape)}.")
        if got.dtype != expected.dtype and (got.dtype == torch.bool or expected.dtype == torch.bool):
            got = got.to(expected.dtype)
        try:
            torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, check_dtype=False)
        except AssertionError as err:
            g, e = got.detach().float(), expected.detach().float()
            close = torch.isclose(g, e, rtol=rtol or 1.3e-6, atol=atol or 1e-5, equal_nan=True)
            bad = (~close).nonzero()[:3].tolist()
            rows = "\n".join(
                f"    at {tuple(i)}: got {g[tuple(i)].item():.6g}, expected {e[tuple(i)].item():.6g}"
                for i in bad
            )
            n_bad = int((~close).sum())
            raise AssertionError(
                f"{path}: {n_bad} of {e.numel()} entries differ. First ones:\n{rows}"
                if bad
                else f"{path}: {err}"
            ) from None
        return
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            raise AssertionError(f"{path}: expected a dict, got {_describe(got)}.")
        if set(got) != set(expected):
            raise AssertionError(
                f"{path}: keys {sorted(map(str, got))} but expected {sorted(map(str, expected))}."
            )
        for k in expected:
            assert_same(got[k], expected[k], inputs, path=f"{path}[{k!r}]", rtol=rtol, atol=atol)
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            raise AssertionError(f"{path}: expected a list, got {_describe(got)}.")
        if len(got) != len(expected):
            raise AssertionError(f"{path}: length {len(got)} but expected {len(expected)}.")
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same(g, e, inputs, path=f"{path}[{i}]", rtol=rtol, atol=atol)
        return
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not math.isclose(got, expected, rel_tol=rtol or 1e-6, abs_tol=atol or 1e-9):
            raise AssertionError(f"{path}: got {got!r}, expected {expected!r}.")
        return
    if got != expected:
        raise AssertionError(f"{path}: got {_describe(got)}, expected {_describe(expected)}.")


@dataclass(frozen=True)
class Exercise:
    """One exercise: its id ("3.2"), the name the student defines, points and test recipe."""

    id: str
    title: str
    target: str
    points: int
    make_case: Callable[[int], dict]
    run: Callable[[Any, dict], Any]
    reference: Callable[[dict], Any]
    compare: Callable[[Any, Any, dict], None] = assert_same
    public_seeds: tuple[int, ...] = (0, 1)
    hidden_seeds: tuple[int, ...] = (1000, 1001, 1002)
    edge_cases: Callable[[], list[dict]] | None = None
    hint: str = ""
    chapter: str = field(default="")
    #: Seconds one case may take (run in the kernel, and compare in the judge); ``None`` = the
    #: grader's ``--timeout``. Measured-outcome exercises (training, latency) set a larger one.
    timeout: float | None = None

    def cases(self, hidden: bool) -> list[dict]:
        """Inputs for the self-check (public) or for grading (public + hidden + edge cases)."""
        seeds = self.public_seeds + (self.hidden_seeds if hidden else ())
        out = [self.make_case(s) for s in seeds]
        if hidden and self.edge_cases is not None:
            out += self.edge_cases()
        return out


_REGISTRY: dict[str, Exercise] | None = None


def _load() -> dict[str, Exercise]:
    """Import every ``course_utils.specs.chNN`` module and index its ``EXERCISES``."""
    global _REGISTRY
    if _REGISTRY is None:
        from . import specs

        reg: dict[str, Exercise] = {}
        for info in sorted(pkgutil.iter_modules(specs.__path__), key=lambda i: i.name):
            if not info.name.startswith("ch"):
                continue
            mod = importlib.import_module(f"{specs.__name__}.{info.name}")
            chapter = CHAPTERS[int(info.name[2:4])]
            for ex in getattr(mod, "EXERCISES", []):
                if ex.id in reg:
                    raise RuntimeError(f"Exercise id {ex.id} is defined twice.")
                if not ex.id.startswith(f"{int(chapter[:2])}."):
                    raise RuntimeError(f"Exercise {ex.id} is in the spec of chapter {chapter}.")
                object.__setattr__(ex, "chapter", chapter)
                reg[ex.id] = ex
        _REGISTRY = reg
    return _REGISTRY


def all_exercises() -> list[Exercise]:
    """Every registered exercise, in id order (1.1, 1.2, …, 3.10)."""
    return sorted(_load().values(), key=lambda e: tuple(int(p) for p in e.id.split(".")))


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id, or a ``KeyError`` listing the known ids."""
    reg = _load()
    if exercise_id not in reg:
        known = ", ".join(e.id for e in all_exercises())
        raise KeyError(f"No exercise {exercise_id!r}. Known exercises: {known}.")
    return reg[exercise_id]


def resolve_chapter(name: str | int) -> str:
    """``3``, ``"3"``, ``"03"`` or ``"03_custom_pruning_methods"`` → the chapter slug."""
    s = str(name).strip()
    if s.isdigit() and int(s) in CHAPTERS:
        return CHAPTERS[int(s)]
    if s in CHAPTERS.values():
        return s
    raise ValueError(
        f"Unknown assignment {name!r}. Use a chapter number or slug: "
        + ", ".join(f"{n} ({slug})" for n, slug in CHAPTERS.items())
    )


def chapter_exercises(chapter: str | int) -> list[Exercise]:
    """The exercises of one chapter, in id order."""
    slug = resolve_chapter(chapter)
    return [e for e in all_exercises() if e.chapter == slug]
