"""Exercise spec for chapter 8: distillation from an ensemble of teachers (8.1).

The lesson's loss (``course_utils.distillation``) has one teacher. Exercise 8.1 distils from
K teachers whose soft target is the weighted mean of their temperature-softened probabilities::

    p̄ = Σ_k w_k · softmax(t_k / T) / Σ_k w_k          (uniform w_k when weights is None)
    L = alpha · T² · KL(p̄ ‖ softmax(s / T)) + (1 − alpha) · CE(s, y)

with the KL as ``F.kl_div(log_softmax(s/T), p̄, reduction="batchmean")``. No gradient may reach
the teachers' logits: ``run`` hands them over with ``requires_grad=True`` (as a teacher run
without ``torch.no_grad()`` would) and reports whether ``backward`` reached them.
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
_KS = (3, 2, 4, 1, 3)


def _ens_case(seed: int) -> dict:
    """K teachers on different logit scales (so averaging logits ≠ averaging probabilities);
    explicit weights (not summing to 1) unless the seed is a multiple of 3 (``None``: uniform)."""
    g = torch.Generator().manual_seed(seed)
    n, c, k = 6 + seed % 5, 10, _KS[seed % len(_KS)]
    scales = (1.0, 4.0, 0.5, 2.5)
    teachers = [torch.randn(n, c, generator=g) * scales[i] for i in range(k)]
    weights = [float(w) for w in torch.rand(k, generator=g) * 3 + 0.2] if seed % 3 else None
    return {
        "student": torch.randn(n, c, generator=g) * 3,
        "teachers": teachers,
        "targets": torch.randint(c, (n,), generator=g),
        "T": _TS[seed % len(_TS)],
        "alpha": _ALPHAS[seed % len(_ALPHAS)],
        "weights": weights,
    }


def _ens_edge_cases() -> list[dict]:
    """Pure soft loss (alpha=1), pure CE (alpha=0), weights that select one teacher, one teacher
    (the lesson's loss), and every teacher equal to the student (the KL term is 0)."""
    pure_kl = _ens_case(11) | {"alpha": 1.0, "T": 3.0}
    pure_ce = _ens_case(12) | {"alpha": 0.0}
    one_hot = _ens_case(15) | {"weights": [0.0, 1.0, 0.0]}  # seed 15: three teachers
    single = _ens_case(14) | {"teachers": _ens_case(14)["teachers"][:1], "weights": None}
    same = _ens_case(10)
    same["teachers"] = [same["student"].clone() for _ in range(3)]
    same["weights"] = [1.0, 2.0, 5.0]
    return [pure_kl, pure_ce, one_hot, single, same]


def _ens_run(fn, inputs: dict) -> dict:
    s = inputs["student"].clone().requires_grad_(True)
    ts = [t.clone().requires_grad_(True) for t in inputs["teachers"]]
    args = (s, ts, inputs["targets"].clone(), inputs["T"], inputs["alpha"])
    w = inputs["weights"]
    loss = fn(*args) if w is None else fn(*args, weights=list(w))
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise TypeError(f"ensemble_distillation_loss must return a scalar tensor, got {loss!r:.80}")
    if not loss.requires_grad:
        raise TypeError("the returned loss has no gradient w.r.t. the student logits (no .item()/detach()).")
    loss.backward()
    if s.grad is None:
        raise TypeError(
            "backward() did not reach the student logits: the loss must stay differentiable w.r.t. "
            "student_logits (detach the teachers, never the student)."
        )
    return {
        "loss": float(loss.detach()),
        "grad": s.grad.detach().clone(),
        "teacher_grad": any(t.grad is not None for t in ts),
    }


def _formula(
    s,
    ts,
    y,
    T,
    alpha,
    weights,
    *,
    mean_logits=False,
    uniform=False,
    normalize=True,
    t2=True,
    swap=False,
    reduction="batchmean",
    swap_alpha=False,
    teacher_only_T=False,
) -> torch.Tensor:
    """The loss, or one known mistake of it (the keyword flags)."""
    k = len(ts)
    w = torch.ones(k) if weights is None or uniform else torch.tensor(weights, dtype=torch.float32)
    if normalize:
        w = w / w.sum()
    elif weights is None or uniform:
        w = w / k  # "forgot to normalize" only differs from the right answer for explicit weights
    ts = [t.detach() for t in ts]
    if mean_logits:
        p_bar = F.softmax(sum(wi * t for wi, t in zip(w, ts)) / T, dim=-1)
    else:
        p_bar = sum(wi * F.softmax(t / T, dim=-1) for wi, t in zip(w, ts))
    log_q = F.log_softmax(s if teacher_only_T else s / T, dim=-1)
    with warnings.catch_warnings():  # the "mean" variant is a diagnosed mistake, not a lesson
        warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
        if swap:  # KL(student ‖ ensemble)
            kl = F.kl_div(p_bar.clamp_min(1e-30).log(), log_q.exp(), reduction=reduction)
        else:
            kl = F.kl_div(log_q, p_bar, reduction=reduction)
    a = 1 - alpha if swap_alpha else alpha
    return a * (T * T if t2 else 1.0) * kl + (1 - a) * F.cross_entropy(s, y)


def _ens_reference(inputs: dict) -> dict:
    s = inputs["student"].clone().requires_grad_(True)
    loss = _formula(s, inputs["teachers"], inputs["targets"], inputs["T"], inputs["alpha"], inputs["weights"])
    loss.backward()
    return {"loss": float(loss.detach()), "grad": s.grad.detach().clone(), "teacher_grad": False}


_MISTAKES = {
    "the soft target averages the teachers' logits; average their probabilities instead: "
    "p̄ = Σ w_k·softmax(t_k/T) / Σ w_k": {"mean_logits": True},
    "the weights are ignored: p̄ is the *weighted* mean Σ w_k·softmax(t_k/T) / Σ w_k": {"uniform": True},
    "the weights are not normalized: divide by their sum so that p̄ is a probability distribution": {
        "normalize": False
    },
    "the T² factor is missing (multiply the KL term by T*T)": {"t2": False},
    "the KL direction is reversed: use F.kl_div(log_softmax(student/T), p̄)": {"swap": True},
    'the KL uses reduction="mean" (averages over classes too): use reduction="batchmean"': {
        "reduction": "mean"
    },
    'the KL uses reduction="sum": use reduction="batchmean" (divide by the batch size)': {"reduction": "sum"},
    "alpha weights the wrong term: alpha goes on the soft (KL) term, 1 − alpha on cross-entropy": {
        "swap_alpha": True
    },
    "the temperature divides only the teachers' logits: the student's log_softmax needs s / T too": {
        "teacher_only_T": True
    },
}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def _ens_compare(got: Any, expected: dict, inputs: dict) -> None:
    if not isinstance(got, dict) or set(got) != set(expected):
        assert_same(got, expected, inputs)
    gl, el = got["loss"], expected["loss"]
    w = inputs["weights"]
    case = (
        f"({len(inputs['teachers'])} teacher(s), weights={'None' if w is None else [round(x, 3) for x in w]}, "
        f"T={inputs['T']:g}, alpha={inputs['alpha']:g}, batch {inputs['student'].shape[0]})"
    )
    if not _close(gl, el):
        args = (inputs["student"], inputs["teachers"], inputs["targets"], inputs["T"], inputs["alpha"], w)
        for why, kw in _MISTAKES.items():
            wrong = float(_formula(*args, **kw).detach())
            if not _close(wrong, el) and _close(gl, wrong):
                raise AssertionError(f"loss {gl:.6g}, expected {el:.6g} {case}: {why}.")
        raise AssertionError(
            f"loss {gl:.6g}, expected {el:.6g} {case}. Check: p̄ = weighted mean of softmax(t_k / T) "
            "(weights divided by their sum; uniform when weights is None); KL = F.kl_div(log_softmax(s / T), "
            "p̄, reduction='batchmean') times alpha·T²; plus (1 − alpha)·cross_entropy(s, y) at T = 1."
        )
    assert_same(
        got["grad"], expected["grad"], inputs, path="gradient w.r.t. the student logits", rtol=1e-4, atol=1e-6
    )
    if got["teacher_grad"]:
        raise AssertionError(
            f"the loss is right {case}, but backward() put a .grad on the teachers' logits: the teachers "
            "are fixed targets, so detach them (t.detach(), or compute p̄ under torch.no_grad()); otherwise "
            "a teacher that was run with gradients enabled would be trained towards the student."
        )


EXERCISES = [
    Exercise(
        id="8.1",
        title="ensemble_distillation_loss",
        target="ensemble_distillation_loss",
        points=3,
        make_case=_ens_case,
        run=_ens_run,
        reference=_ens_reference,
        compare=_ens_compare,
        public_seeds=(0, 1, 3),
        hidden_seeds=(2, 4, 1000, 1001, 1002),
        edge_cases=_ens_edge_cases,
        hint="w = ones(K) if weights is None else tensor(weights); w = w / w.sum(); "
        "p_bar = Σ_k w[k] * F.softmax(t_k.detach() / T, -1) (probabilities, not logits); then "
        "alpha * T**2 * F.kl_div(F.log_softmax(s / T, -1), p_bar, reduction='batchmean') "
        "+ (1 - alpha) * F.cross_entropy(s, y)",
    ),
]
