"""Chapter 7 and 8 exercise specs: the reference solutions (taken from the solution notebooks —
the single source) pass every public, hidden and edge case; plausible wrong versions fail with
messages that say what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from spec_helpers import fails_with, run_all_cases
from torch import nn

from course_utils.exercise import get_exercise
from course_utils.notebooks import solution_namespace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ch07() -> dict[str, Any]:
    return solution_namespace(ROOT / "solutions" / "07_amp.ipynb")


@pytest.fixture(scope="module")
def ch08() -> dict[str, Any]:
    return solution_namespace(ROOT / "solutions" / "08_capstone.ipynb")


# --- 7.1 DynamicLossScaler -------------------------------------------------------------------


def test_reference_scaler_passes_all_cases(ch07: dict[str, Any]) -> None:
    n = run_all_cases("7.1", ch07["DynamicLossScaler"])
    assert n >= 2 + 4 + 2


def test_scaler_cases_are_long_and_contain_inf_and_nan() -> None:
    ex = get_exercise("7.1")
    kinds: set[str] = set()
    for inputs in ex.cases(hidden=True):
        assert len(inputs["ws"]) >= 20
        kinds |= set(inputs["kinds"])
        ref = ex.reference(inputs)
        assert len(ref["scales"]) == len(inputs["ws"]) + 1
    assert {"finite", "inf", "-inf", "nan"} <= kinds
    public = ex.cases(hidden=False)
    assert all(any(ex.reference(c)["skipped"]) for c in public), "public cases must skip some steps"


def test_scaler_never_skipping_fails(ch07: dict[str, Any]) -> None:
    class NoSkip(ch07["DynamicLossScaler"]):
        def step(self, optimizer):
            if id(optimizer) not in self._found_inf:
                self.unscale_(optimizer)
            return optimizer.step()

    fails_with("7.1", NoSkip, "you applied the optimizer step", "skipped it")


def test_scaler_unscaling_twice_fails(ch07: dict[str, Any]) -> None:
    class DoubleUnscale(ch07["DynamicLossScaler"]):
        def step(self, optimizer):
            self._found_inf.pop(id(optimizer), None)
            return super().step(optimizer)

    msg = fails_with("7.1", DoubleUnscale)
    assert "parameters" in msg or "step" in msg


def test_scaler_without_tracker_reset_fails(ch07: dict[str, Any]) -> None:
    class NoReset(ch07["DynamicLossScaler"]):
        def update(self):
            if any(self._found_inf.values()):
                self._scale *= self.backoff_factor  # growth counter kept: grows too early
            else:
                self._growth_tracker += 1
                if self._growth_tracker % self.growth_interval == 0:
                    self._scale *= self.growth_factor
            self._found_inf.clear()

    fails_with("7.1", NoReset, "after update() at step", "GradScaler('cpu') has", "reset the growth counter")


def test_scaler_growing_past_float32_fails(ch07: dict[str, Any]) -> None:
    class NoCeiling(ch07["DynamicLossScaler"]):
        def update(self):
            if any(self._found_inf.values()):
                self._scale *= self.backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self.growth_interval:
                    self._scale *= self.growth_factor
                    self._growth_tracker = 0
            self._found_inf.clear()

    fails_with("7.1", NoCeiling, "your scale is inf", "still finite in float32")


def test_scaler_with_fixed_scale_fails(ch07: dict[str, Any]) -> None:
    class Fixed(ch07["DynamicLossScaler"]):
        def update(self):
            self._found_inf.clear()

    fails_with("7.1", Fixed, "after update() at step")


def test_scaler_wrong_initial_scale_fails(ch07: dict[str, Any]) -> None:
    class Unit(ch07["DynamicLossScaler"]):
        def scale(self, loss):
            return loss

    fails_with("7.1", Unit, "before any step", "init_scale")


# --- 7.2 train_step_amp_accum -------------------------------------------------------------------


def test_reference_amp_accum_step_passes_all_cases(ch07: dict[str, Any]) -> None:
    assert run_all_cases("7.2", ch07["train_step_amp_accum"]) >= 6


def test_amp_accum_cases_cover_k_overflow_unequal_and_adam() -> None:
    ex = get_exercise("7.2")
    cases = ex.cases(hidden=True)
    ks = {len(c["xs"][0]) for c in cases}
    assert {1, 3} <= ks
    assert any(len({len(y) for y in c["ys"][0]}) > 1 for c in cases)  # unequal micro-batches
    assert {c["optimizer"] for c in cases} == {"sgd", "adam"}
    ref = ex.reference(ex.make_case(0))
    assert len(ex.make_case(0)["xs"][0]) == 3 and ref["skipped"][0] and not all(ref["skipped"])
    assert ref["scales"][0] == 2.0**126  # backed off once for 3 micro-batches
    assert ref["linear_output_dtypes"] == ["bfloat16"]


def _accum(
    per_mb_update: bool = False,
    no_divide: bool = False,
    per_mb_zero: bool = False,
    per_mb_unscale: bool = False,
    clip_first: bool = False,
    autocast: bool = True,
    return_sum: bool = False,
):
    def train_step_amp_accum(
        model, optimizer, scaler, micro_batches, device_type="cpu", dtype=torch.bfloat16, max_norm=1.0
    ):
        total = sum(len(y) for _, y in micro_batches)
        optimizer.zero_grad()
        loss_sum, before, skipped = 0.0, scaler.get_scale(), False
        for x, y in micro_batches:
            if per_mb_zero:
                optimizer.zero_grad()
            with torch.autocast(device_type, dtype=dtype, enabled=autocast):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss if no_divide else loss * len(y) / total).backward()
            loss_sum += loss.item() * (1 if return_sum else len(y) / total)
            if per_mb_unscale:
                scaler.unscale_(optimizer)
            if per_mb_update:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                scaler.step(optimizer)
                scaler.update()
        if not per_mb_update:
            if clip_first:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            scaler.unscale_(optimizer)
            if not clip_first:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            scaler.step(optimizer)
            scaler.update()
        skipped = scaler.get_scale() < before
        return {"loss": loss_sum, "skipped": skipped}

    return train_step_amp_accum


def test_amp_accum_stepping_the_scaler_per_micro_batch_fails() -> None:
    fails_with("7.2", _accum(per_mb_update=True), "ONCE per optimizer step", "not once per micro-batch")


def test_amp_accum_forgetting_the_1_over_k_fails() -> None:
    fails_with("7.2", _accum(no_divide=True), "n_i / N (1/k for equal sizes)")


def test_amp_accum_zero_grad_per_micro_batch_fails() -> None:
    fails_with("7.2", _accum(per_mb_zero=True), "not per micro-batch")


def test_amp_accum_unscale_per_micro_batch_fails_with_a_helpful_message() -> None:
    fails_with(
        "7.2", _accum(per_mb_unscale=True), "unscale_() has already been called", "ONCE per optimizer step"
    )


def test_amp_accum_clipping_before_unscale_fails() -> None:
    fails_with("7.2", _accum(clip_first=True), "clip only after scaler.unscale_")


def test_amp_accum_without_autocast_fails() -> None:
    fails_with("7.2", _accum(autocast=False), "['float32']", "torch.autocast")


def test_amp_accum_returning_the_summed_loss_fails() -> None:
    fails_with("7.2", _accum(return_sum=True), "SUM of the micro-batch losses")


# --- 8.1 ensemble_distillation_loss -------------------------------------------------------------


def test_reference_ensemble_distillation_loss_passes_all_cases(ch08: dict[str, Any]) -> None:
    assert run_all_cases("8.1", ch08["ensemble_distillation_loss"]) >= 3 + 5 + 5


def test_ensemble_cases_cover_what_the_exercise_states() -> None:
    """1 to 4 teachers, weights None and explicit (not summing to 1), several T and alpha; the
    public cases (check()) already contain explicit weights and several teachers."""
    ex = get_exercise("8.1")
    cases = ex.cases(hidden=True)
    assert {len(c["teachers"]) for c in cases} >= {1, 2, 3, 4}
    assert any(c["weights"] is None for c in cases)
    assert any(c["weights"] is not None and abs(sum(c["weights"]) - 1) > 0.5 for c in cases)
    assert len({c["T"] for c in cases}) >= 4 and len({c["alpha"] for c in cases}) >= 4
    public = ex.cases(hidden=False)
    assert any(c["weights"] is not None and len(c["teachers"]) >= 2 for c in public)
    assert any(c["weights"] is None and len(c["teachers"]) >= 2 for c in public)


def test_one_teacher_is_the_lessons_distillation_loss(ch08: dict[str, Any]) -> None:
    """With one teacher and weights=None, 8.1 reduces to course_utils.distillation (the lesson's loss)."""
    from course_utils.distillation import distillation_loss

    def value_and_grad(fn, s0: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
        s = s0.clone().requires_grad_(True)
        loss = fn(s, *args)
        loss.backward()
        return loss.detach(), s.grad

    g = torch.Generator().manual_seed(0)
    for T, alpha in ((1.0, 0.5), (4.0, 0.7), (0.5, 1.0)):
        s0, t = torch.randn(8, 10, generator=g) * 3, torch.randn(8, 10, generator=g) * 3
        y = torch.randint(10, (8,), generator=g)
        torch.testing.assert_close(
            value_and_grad(ch08["ensemble_distillation_loss"], s0, [t], y, T, alpha),
            value_and_grad(distillation_loss, s0, t, y, T, alpha),
        )


def _ens(
    mean_logits: bool = False,
    uniform: bool = False,
    normalize: bool = True,
    t2: bool = True,
    reduction: str = "batchmean",
    swap: bool = False,
    swap_alpha: bool = False,
    teacher_only_T: bool = False,
    detach: bool = True,
):
    """ensemble_distillation_loss written as a student might, with one mistake switched on."""

    def ensemble_distillation_loss(s, ts, y, T, alpha, weights=None):
        k = len(ts)
        w = torch.ones(k) if weights is None or uniform else torch.tensor(weights)
        w = w / (w.sum() if normalize or weights is None else 1.0)
        ts = [t.detach() for t in ts] if detach else ts
        if mean_logits:
            p = F.softmax(sum(wi * t for wi, t in zip(w, ts)) / T, -1)
        else:
            p = sum(wi * F.softmax(t / T, -1) for wi, t in zip(w, ts))
        log_q = F.log_softmax(s if teacher_only_T else s / T, -1)
        kl = (
            F.kl_div(p.log(), log_q.exp(), reduction=reduction)
            if swap
            else F.kl_div(log_q, p, reduction=reduction)
        )
        a = 1 - alpha if swap_alpha else alpha
        return a * (T * T if t2 else 1) * kl + (1 - a) * F.cross_entropy(s, y)

    return ensemble_distillation_loss


def test_the_student_like_implementation_is_right() -> None:
    """``_ens()`` with no mistake switched on passes: each failure below is its mistake's."""
    run_all_cases("8.1", _ens())


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (_ens(mean_logits=True), "averages the teachers' logits; average their probabilities"),
        (_ens(uniform=True), "the weights are ignored"),
        (_ens(normalize=False), "the weights are not normalized"),
        (_ens(t2=False), "T² factor is missing"),
        (_ens(reduction="mean"), 'reduction="mean"'),
        (_ens(reduction="sum"), 'reduction="sum"'),
        (_ens(swap=True), "KL direction is reversed"),
        (_ens(swap_alpha=True), "alpha weights the wrong term"),
        (_ens(teacher_only_T=True), "divides only the teachers' logits"),
        (_ens(detach=False), "put a .grad on the teachers' logits"),
    ],
)
def test_wrong_ensemble_losses_are_diagnosed(wrong, fragment: str) -> None:
    fails_with("8.1", wrong, fragment)


def test_detached_ensemble_loss_is_rejected(ch08: dict[str, Any]) -> None:
    from course_utils.checks import CheckFailed, check

    def detached(s, ts, y, T, alpha, weights=None):
        return ch08["ensemble_distillation_loss"](s, ts, y, T, alpha, weights).detach()

    with pytest.raises(CheckFailed, match="no gradient"):
        check("8.1", detached)


def test_detaching_the_student_instead_of_the_teachers_is_rejected() -> None:
    """The loss still requires grad (through the teachers) but backward() never reaches the student."""
    from course_utils.checks import CheckFailed, check

    wrong = _ens(detach=False)
    with pytest.raises(CheckFailed, match="did not reach the student logits"):
        check("8.1", lambda s, ts, y, T, a, weights=None: wrong(s.detach(), ts, y, T, a, weights))


def test_distill_trains_a_student_towards_the_teacher() -> None:
    from course_utils.distillation import distill, soft_targets

    torch.manual_seed(0)
    x = torch.randn(128, 6)
    teacher = nn.Sequential(nn.Linear(6, 4))
    y = teacher(x).argmax(1)
    loaders = {"train": [(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)], "val": [(x, y)]}
    student = nn.Sequential(nn.Linear(6, 4))
    with torch.no_grad():
        before = F.kl_div(F.log_softmax(student(x), -1), soft_targets(teacher(x), 1.0), reduction="batchmean")
    hist = distill(student, teacher, loaders, epochs=15, T=2.0, alpha=0.9, lr=0.05, progress=False)
    with torch.no_grad():
        after = F.kl_div(F.log_softmax(student(x), -1), soft_targets(teacher(x), 1.0), reduction="batchmean")
    assert after < 0.5 * before
    assert hist.train_loss[-1] < hist.train_loss[0] and len(hist.val_accuracy) == 15
    assert not student.training
    assert all(p.requires_grad for p in teacher.parameters()), "distill must not modify the caller's teacher"


def test_distillation_loss_rejects_bad_arguments() -> None:
    from course_utils.distillation import distillation_loss, soft_targets

    s, y = torch.randn(4, 3), torch.zeros(4).long()
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, s, y, 2.0, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, torch.randn(4, 5), y, 2.0, 0.5)
    with pytest.raises(ValueError, match="T must be > 0"):
        soft_targets(s, 0.0)
