"""Specs of chapters 1–3: the solutions pass every case, plausible mistakes fail helpfully.

The reference solutions are taken from the solution notebooks themselves (their first code
cell and the code cells of each exercise section, without the ``check`` calls), so the tests
and the notebooks share one source.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from course_utils.exercise import Exercise, chapter_exercises, get_exercise
from course_utils.notebooks import solution_namespace

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = {1: "01_pruning_theory", 2: "02_masks_and_reparameterization", 3: "03_custom_pruning_methods"}
IDS = [ex.id for ch in CHAPTERS for ex in chapter_exercises(ch)]


_NS: dict[int, dict[str, Any]] = {}


def solution(exercise_id: str) -> Any:
    ex = get_exercise(exercise_id)
    chapter = int(exercise_id.split(".")[0])
    if chapter not in _NS:
        _NS[chapter] = solution_namespace(ROOT / "solutions" / f"{CHAPTERS[chapter]}.ipynb")
    return _NS[chapter][ex.target]


def _roundtrip(obj: Any) -> Any:
    """What the grader does with inputs and outputs: torch.save → torch.load(weights_only=True)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def run_all(ex: Exercise, obj: Any) -> list[str]:
    """Messages of every failing case (public + hidden + edge), empty when all pass."""
    failures = []
    for i, inputs in enumerate(ex.cases(hidden=True)):
        inputs = _roundtrip(inputs)
        try:
            got = _roundtrip(ex.run(obj, inputs))
        except Exception as err:
            failures.append(f"case {i} raised {type(err).__name__}: {err}")
            continue
        try:
            ex.compare(got, ex.reference(inputs), inputs)
        except AssertionError as err:
            failures.append(f"case {i}: {err}")
    return failures


# --- the reference solutions pass everything -------------------------------------------------------


def test_every_pruning_exercise_is_registered_in_order() -> None:
    first = ["1.1", "1.2", "1.3", "1.4", "1.5", "2.1", "2.2", "2.3", "2.4", "3.1", "3.2", "3.3", "3.4"]
    assert [i for i in IDS if i in first] == first  # the original exercises, in order; new ones join
    for i in first:
        ex = get_exercise(i)
        assert 1 <= ex.points <= 3 and ex.hint
        assert len(ex.cases(hidden=True)) > len(ex.cases(hidden=False)) >= 2


@pytest.mark.parametrize("exercise_id", IDS)
def test_solution_passes_all_cases(exercise_id: str) -> None:
    ex = get_exercise(exercise_id)
    assert run_all(ex, solution(exercise_id)) == []


# Measured-outcome exercises: their reference is the measuring context (test split, fp32 numbers),
# not an answer that compare() could accept; test_specs_pipeline.py grades each twice identically.
MEASURED = {"1.6", "1.8"}


@pytest.mark.parametrize("exercise_id", [i for i in IDS if i not in MEASURED])
def test_cases_are_deterministic_and_reference_is_stable(exercise_id: str) -> None:
    ex = get_exercise(exercise_id)
    a, b = ex.make_case(1000), ex.make_case(1000)
    ex.compare(ex.reference(a), ex.reference(b), a)  # same seed → same inputs → same expected


def test_amounts_cover_float_and_int() -> None:
    for i in ("1.2", "1.3", "2.2"):
        kinds = {type(c["amount"]) for c in get_exercise(i).cases(hidden=True) if "amount" in c}
        assert kinds == {int, float}, i


# --- plausible mistakes fail, with a message that says what is wrong ----------------------------------


def expect_failure(exercise_id: str, wrong: Any, *phrases: str) -> None:
    failures = run_all(get_exercise(exercise_id), wrong)
    assert failures, f"a wrong {exercise_id} passed every case"
    text = "\n".join(failures)
    for phrase in phrases:
        assert phrase in text, f"expected {phrase!r} in the failure messages:\n{text[:2000]}"


def test_1_1_counting_nonzeros_fails() -> None:
    expect_failure("1.1", lambda m: 1 - solution("1.1")(m), "got", "expected")


def _l1(w: torch.Tensor, k: int, largest: bool = False) -> torch.Tensor:
    mask = torch.ones_like(w)
    if k:
        mask.view(-1)[torch.topk(w.abs().flatten(), k, largest=largest).indices] = 0
    return mask


def test_1_2_pruning_the_largest_fails() -> None:
    def largest(w: torch.Tensor, amount: int | float) -> torch.Tensor:
        k = amount if isinstance(amount, int) else round(amount * w.numel())
        return _l1(w, k, largest=True)

    expect_failure("1.2", largest, "not the right ones", "lowest scores")


def test_1_2_truncating_instead_of_rounding_fails() -> None:
    def truncates(w: torch.Tensor, amount: int | float) -> torch.Tensor:
        return _l1(w, amount if isinstance(amount, int) else int(amount * w.numel()))

    expect_failure("1.2", truncates, "torch prunes round(")


def test_1_2_int_amount_as_fraction_fails() -> None:
    def always_fraction(w: torch.Tensor, amount: int | float) -> torch.Tensor:
        return _l1(w, min(w.numel(), round(float(amount) * w.numel())))

    expect_failure("1.2", always_fraction, "is an int: prune exactly")


def test_1_2_flattened_mask_fails() -> None:
    expect_failure("1.2", lambda w, a: solution("1.2")(w, a).flatten(), "A mask has exactly the shape")


def test_1_3_counting_entries_instead_of_channels_fails() -> None:
    def per_entry(w: torch.Tensor, amount: int | float, n: Any, dim: int) -> torch.Tensor:
        if isinstance(amount, float):
            amount = min(w.shape[dim], round(amount * w.numel()))
        return solution("1.3")(w, amount, n, dim)

    expect_failure("1.3", per_entry, "you pruned", "slices along dim")


def test_1_3_unstructured_inside_slices_fails() -> None:
    expect_failure(
        "1.3",
        lambda w, a, n, d: solution("1.2")(w, a if isinstance(a, float) else min(a, w.numel())),
        "mixes 0 and 1 inside one slice",
    )


def test_1_3_wrong_norm_fails() -> None:
    expect_failure(
        "1.3", lambda w, a, n, d: solution("1.3")(w, a, 1 if n != 1 else 2, d), "not the right ones"
    )


def test_1_4_the_broken_version_fails_on_shapes() -> None:
    def broken(model: nn.Module, threshold: float) -> dict:
        for name, param in model.named_parameters():
            if "weight" in name:
                param.data = param.data[param.data.abs() >= threshold]
        return {}

    expect_failure("1.4", broken, "shape")


def test_1_4_pruning_batchnorm_and_strict_threshold_fail() -> None:
    def also_bn(model: nn.Module, threshold: float) -> dict:
        masks = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "weight" in name:
                    masks[name] = (p.abs() >= threshold).float()
                    p.mul_(masks[name])
        return masks

    expect_failure("1.4", also_bn, "you pruned ['1.weight'", "ends in 'weight'")

    def strict(model: nn.Module, threshold: float) -> dict:
        return solution("1.4")(model, threshold + 1e-7)  # drops the entry exactly at the threshold

    expect_failure("1.4", strict, "entries differ")


def test_1_5_masking_instead_of_removing_fails() -> None:
    def masks_only(conv1, bn, conv2, amount):
        conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, padding=1, bias=conv1.bias is not None)
        return conv1, bn, conv2

    expect_failure("1.5", masks_only, "['shapes']")


def _chain_by(score: Any, reorder: bool = False) -> Any:
    """A 1.5 implementation that ranks channels by ``score(conv1, bn)`` (for mistakes)."""
    from course_utils import pruning as P

    def fn(conv1: nn.Conv2d, bn: nn.BatchNorm2d, conv2: nn.Conv2d, amount: int | float) -> tuple:
        keep = P.top_channels(score(conv1, bn), amount)
        if reorder:  # keep the right channels but in rank order, consistently in all three layers
            keep = keep[torch.argsort(score(conv1, bn)[keep], descending=True)]
        return (
            P.slice_conv2d(conv1, out_idx=keep),
            P.slice_batchnorm2d(bn, keep),
            P.slice_conv2d(conv2, in_idx=keep),
        )

    return fn


def test_1_5_ranking_by_bn_gamma_through_other_code_passes() -> None:
    assert run_all(get_exercise("1.5"), _chain_by(lambda c, b: b.weight.detach().abs())) == []


def test_1_5_forgetting_batchnorm_or_keeping_the_wrong_channels_fails() -> None:
    def keeps_bn(conv1, bn, conv2, amount):
        new1, _, new2 = solution("1.5")(conv1, bn, conv2, amount)
        return new1, bn, new2

    expect_failure("1.5", keeps_bn, "['shapes']['bn.weight']")
    # the old criterion, the filter L1 norm: meaningless behind BatchNorm, so no longer accepted
    expect_failure(
        "1.5", _chain_by(lambda c, b: c.weight.detach().abs().sum((1, 2, 3))), "kept conv1 filters"
    )
    # signed γ instead of |γ|: a negative scale is as strong as a positive one
    expect_failure("1.5", _chain_by(lambda c, b: b.weight.detach()), "kept conv1 filters")
    expect_failure(
        "1.5", _chain_by(lambda c, b: -b.weight.detach().abs()), "kept conv1 filters"
    )  # the smallest


def test_1_5_reordering_or_returning_the_given_modules_fails() -> None:
    # same function, but the channels are not in their original order
    expect_failure("1.5", _chain_by(lambda c, b: b.weight.detach().abs(), reorder=True), "original order")

    def same_objects(conv1, bn, conv2, amount):
        new = solution("1.5")(conv1, bn, conv2, amount)
        if all(a.weight.shape == b.weight.shape for a, b in zip(new, (conv1, bn, conv2))):
            return conv1, bn, conv2  # nothing removed: hands back the originals
        return new

    expect_failure("1.5", same_objects, "['new_modules']")
    expect_failure("1.5", lambda conv1, bn, conv2, amount: (conv1, bn, conv2), "['new_modules']")


def _apply_no_buffer(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    orig = module._parameters.pop(name)
    module.register_parameter(name + "_orig", orig)
    module.__dict__[name + "_mask"] = mask.float()  # a plain attribute: not saved, not moved
    module.register_forward_pre_hook(lambda m, a: setattr(m, name, m.__dict__[name + "_mask"] * orig))
    setattr(module, name, orig * mask)


def test_2_1_mistakes_fail() -> None:
    expect_failure("2.1", _apply_no_buffer, "state_dict_keys")

    def no_hook(module: nn.Module, name: str, mask: torch.Tensor) -> None:
        orig = module._parameters.pop(name)
        module.register_parameter(name + "_orig", orig)
        module.register_buffer(name + "_mask", mask.float())
        setattr(module, name, orig * mask)  # computed once: goes stale when orig changes

    expect_failure("2.1", no_hook, "output after changing the original")

    def hook_only(module: nn.Module, name: str, mask: torch.Tensor) -> None:
        orig = module._parameters.pop(name)
        module.register_parameter(name + "_orig", orig)
        module.register_buffer(name + "_mask", mask.float())
        module.register_forward_pre_hook(lambda m, a: setattr(m, name, orig * getattr(m, name + "_mask")))

    expect_failure("2.1", hook_only, "before the first forward")


def test_2_2_mistakes_fail() -> None:
    def ignores_old(t, old_mask, amount):
        k = amount if isinstance(amount, int) else round(amount * t.numel())
        return _l1(t, min(k, t.numel())) * old_mask

    expect_failure("2.2", ignores_old, "you pruned")

    def revives(t, old_mask, amount):
        return solution("1.2")(t, amount if isinstance(amount, float) else min(amount, t.numel()))

    expect_failure("2.2", revives, "already pruned by the earlier mask")


def test_2_3_mistakes_fail() -> None:
    def new_parameter(module: nn.Module, name: str) -> None:
        w = getattr(module, name).detach().clone()
        for k, h in list(module._forward_pre_hooks.items()):
            if isinstance(h, prune.BasePruningMethod) and h._tensor_name == name:
                del module._forward_pre_hooks[k]
        del module._parameters[name + "_orig"], module._buffers[name + "_mask"]
        delattr(module, name)
        module.register_parameter(name, nn.Parameter(w))

    expect_failure("2.3", new_parameter, "same Parameter object")

    def removes_every_hook(module: nn.Module, name: str) -> None:
        solution("2.3")(module, name)
        for k, h in list(module._forward_pre_hooks.items()):
            if isinstance(h, prune.BasePruningMethod):
                del module._forward_pre_hooks[k]

    expect_failure("2.3", removes_every_hook, "pruning hooks left")


def test_2_4_mistakes_fail() -> None:
    def no_masks(model, masks, batches, optimizer):
        model.train()
        out = []
        for x, y in batches:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            out.append(loss.item())
        return out

    expect_failure("2.4", no_masks, "pruned weights are exactly 0")

    def masks_late(model, masks, batches, optimizer):
        params = dict(model.named_parameters())
        model.train()
        out = []
        for x, y in batches:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for k, m in masks.items():
                    params[k].mul_(m)
            out.append(loss.item())
        return out

    expect_failure("2.4", masks_late, "['losses'][0]")


def test_3_1_mistakes_fail() -> None:
    class Odd(prune.BasePruningMethod):
        PRUNING_TYPE = "unstructured"

        def compute_mask(self, t, default_mask):
            mask = default_mask.clone()
            mask.view(-1)[1::2] = 0
            return mask

    class IgnoresDefault(prune.BasePruningMethod):
        PRUNING_TYPE = "unstructured"

        def compute_mask(self, t, default_mask):
            mask = torch.ones_like(t)
            mask.view(-1)[::2] = 0
            return mask

    expect_failure("3.1", Odd, "entries differ")
    expect_failure("3.1", IgnoresDefault, "compute_mask(w, default_mask)")
    expect_failure("3.1", lambda *a: None, "subclass of torch.nn.utils.prune.BasePruningMethod")


def test_3_2_mistakes_fail() -> None:
    class Strict(solution("3.2")):
        def compute_mask(self, t, default_mask):
            return default_mask * (t.abs() > self.threshold)

    class IgnoresDefault(solution("3.2")):
        def compute_mask(self, t, default_mask):
            return (t.abs() >= self.threshold).float()

    expect_failure("3.2", Strict, "entries differ")
    expect_failure("3.2", IgnoresDefault, "compute_mask(w, default_mask)")


def test_3_3_mistakes_fail() -> None:
    class Unstructured(solution("3.3")):
        PRUNING_TYPE = "unstructured"

    class FlatGroups(solution("3.3")):
        def compute_mask(self, t, default_mask):
            groups = (t.abs() * default_mask).reshape(-1, self.m)  # groups over kh·kw for convs
            keep = torch.zeros_like(groups).scatter_(1, groups.topk(self.n, dim=1).indices, 1.0)
            return keep.reshape(t.shape) * default_mask

    expect_failure("3.3", Unstructured, "PRUNING_TYPE is 'unstructured' but this method needs 'global'")
    expect_failure("3.3", FlatGroups, "entries differ")


def test_3_4_mistakes_fail() -> None:
    class NoFloor(solution("3.4")):
        def compute_mask(self, t, default_mask):
            k = self.amount if isinstance(self.amount, int) else round(self.amount * t.shape[self.dim])
            return prune.LnStructured(k, n=self.n, dim=self.dim).compute_mask(t, default_mask)

    expect_failure("3.4", NoFloor, "mask after a second apply")
