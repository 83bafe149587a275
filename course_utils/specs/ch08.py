"""Exercise specs for chapter 8 — capstone: the knowledge-distillation loss.

Convention (stated in the notebook): ``alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−alpha)·CE(s, y)``
with ``F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean")``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from ..exercise import Exercise, assert_same

_TS = (1.0, 2.0, 4.0, 8.0, 0.5)
_ALPHAS = (0.5, 0.3, 0.9, 0.7, 0.25)


def _kd_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, c = 6 + seed % 5, 10
    return {
        "student": torch.randn(n, c, generator=g) * 3,
        "teacher": torch.randn(n, c, generator=g) * 3,
        "targets": torch.randint(c, (n,), generator=g),
        "T": _TS[seed % len(_TS)],
        "alpha": _ALPHAS[seed % len(_ALPHAS)],
    }


def _kd_edge_cases() -> list[dict]:
    """Pure soft loss (alpha=1), pure CE (alpha=0), a student equal to the teacher (KL = 0)."""
    pure_kl = _kd_case(11) | {"alpha": 1.0, "T": 3.0}
    pure_ce = _kd_case(12) | {"alpha": 0.0}
    same = _kd_case(13)
    same["teacher"] = same["student"].clone()
    return [pure_kl, pure_ce, same]


def _kd_run(fn, inputs: dict) -> dict:
    s = inputs["student"].clone().requires_grad_(True)
    loss = fn(s, inputs["teacher"].clone(), inputs["targets"].clone(), inputs["T"], inputs["alpha"])
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise TypeError(f"distillation_loss must return a scalar tensor, got {loss!r:.80}")
    if not loss.requires_grad:
        raise TypeError("the returned loss has no gradient w.r.t. the student logits (no .item()/detach()).")
    loss.backward()
    return {"loss": float(loss.detach()), "grad": s.grad.detach().clone()}


def _formula(
    s, t, y, T, alpha, *, t2=True, swap=False, reduction="batchmean", swap_alpha=False
) -> torch.Tensor:
    a, b = (t, s) if swap else (s, t)  # swap: KL(student ‖ teacher), a known mistake
    with warnings.catch_warnings():  # the "mean" variant is a diagnosed mistake, not a lesson
        warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
        kl = F.kl_div(F.log_softmax(a / T, -1), F.softmax(b / T, -1), reduction=reduction)
    a = 1 - alpha if swap_alpha else alpha
    return a * (T * T if t2 else 1.0) * kl + (1 - a) * F.cross_entropy(s, y)


def _kd_reference(inputs: dict) -> dict:
    s = inputs["student"].clone().requires_grad_(True)
    loss = _formula(s, inputs["teacher"], inputs["targets"], inputs["T"], inputs["alpha"])
    loss.backward()
    return {"loss": float(loss.detach()), "grad": s.grad.detach().clone()}


_MISTAKES = {
    "the T² factor is missing (multiply the KL term by T*T)": {"t2": False},
    "the KL direction is reversed: use F.kl_div(log_softmax(student/T), softmax(teacher/T))": {"swap": True},
    'the KL uses reduction="mean" (averages over classes too): use reduction="batchmean"': {
        "reduction": "mean"
    },
    'the KL uses reduction="sum": use reduction="batchmean" (divide by the batch size)': {"reduction": "sum"},
    "alpha weights the wrong term: alpha goes on the soft (KL) term, 1 − alpha on cross-entropy": {
        "swap_alpha": True
    },
}


def _kd_compare(got: Any, expected: dict, inputs: dict) -> None:
    if not isinstance(got, dict) or set(got) != set(expected):
        assert_same(got, expected, inputs)
    gl, el = got["loss"], expected["loss"]
    case = f"(T={inputs['T']:g}, alpha={inputs['alpha']:g}, batch {inputs['student'].shape[0]})"
    if not math.isclose(gl, el, rel_tol=1e-5, abs_tol=1e-6):
        s, t, y = inputs["student"], inputs["teacher"], inputs["targets"]
        for why, kw in _MISTAKES.items():
            wrong = float(_formula(s, t, y, inputs["T"], inputs["alpha"], **kw).detach())
            if not math.isclose(wrong, el, rel_tol=1e-5, abs_tol=1e-6) and math.isclose(
                gl, wrong, rel_tol=1e-5
            ):
                raise AssertionError(f"loss {gl:.6g}, expected {el:.6g} {case}: {why}.")
        raise AssertionError(
            f"loss {gl:.6g}, expected {el:.6g} {case}. Check: temperature divides both logits before "
            "(log_)softmax; KL = F.kl_div(log_softmax(s/T), softmax(t/T), reduction='batchmean'); "
            "times alpha·T²; plus (1 − alpha)·cross_entropy(s, y) at T = 1."
        )
    assert_same(
        got["grad"], expected["grad"], inputs, path="gradient w.r.t. the student logits", rtol=1e-4, atol=1e-6
    )


EXERCISES = [
    Exercise(
        id="8.1",
        title="distillation_loss",
        target="distillation_loss",
        points=2,
        make_case=_kd_case,
        run=_kd_run,
        reference=_kd_reference,
        compare=_kd_compare,
        public_seeds=(0, 1, 2),
        hidden_seeds=(3, 4, 1000, 1001),
        edge_cases=_kd_edge_cases,
        hint="alpha * T**2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), "
        "reduction='batchmean') + (1 - alpha) * F.cross_entropy(s, y)",
    ),
]
