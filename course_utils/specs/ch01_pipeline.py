"""Exercise specs for chapter 1 — decisions graded by measurement.

1.6 ``choose_sparsities(scan, amounts, baseline, params, keep_fraction, max_drop)`` returns
``{layer: amount}``. Graded by measurement: ``compare`` prunes the trained course CNN layer by
layer with ``prune.l1_unstructured`` at those amounts and checks the parameter budget (exact)
and the accuracy on the test split — a split the scan (made on the validation split) never saw.

1.8 ``prune_whole_model(model, macs_fraction)`` returns a physically smaller course CNN. ``run``
sends back its channel counts and ``state_dict``; ``compare`` rebuilds it, counts its
multiply-accumulates, fine-tunes it with a fixed seeded recipe (2 epochs, one thread) and
measures test accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ..exercise import Exercise

_AMOUNTS = [0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
_KEEP = {0: 0.3, 1: 0.2, 2: 0.15, 1000: 0.25, 1001: 0.18}
_MAX_DROP = 2.0  # percentage points on the test split
_SCAN: dict[str, Any] = {}


def _scan() -> dict:
    """Sensitivity of the trained course CNN on the validation split (computed once per process)."""
    if not _SCAN:
        from ..data import load_digits_dataset
        from ..pruning import PRUNABLE_TYPES, sensitivity_scan
        from ..training import pretrained

        model = pretrained("course_cnn", progress=False)
        s = sensitivity_scan(model, load_digits_dataset().loaders()["val"], _AMOUNTS, progress=False)
        params = {n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
        _SCAN.update(scan=s.accuracy, baseline=s.baseline, params=params)
    return _SCAN


def _choose_case(seed: int) -> dict:
    s = _scan()
    return {
        "scan": {k: list(v) for k, v in s["scan"].items()},
        "amounts": list(_AMOUNTS),
        "baseline": s["baseline"],
        "params": dict(s["params"]),
        "keep_fraction": _KEEP.get(seed, 0.2),
        "max_drop": _MAX_DROP,
    }


def _choose_run(fn, inputs: dict) -> Any:
    out = fn(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in inputs.items()})
    if isinstance(out, dict):
        out = {str(k): (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in out.items()}
    return out


def _choose_reference(inputs: dict) -> dict:
    from ..data import load_digits_dataset
    from ..training import pretrained

    test = load_digits_dataset().test
    return {
        "state": pretrained("course_cnn", progress=False).state_dict(),
        "test_x": torch.stack([x for x, _ in test]),
        "test_y": torch.stack([y for _, y in test]),
    }


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def _choose_compare(got: Any, expected: dict, inputs: dict) -> str:
    params = inputs["params"]
    if not isinstance(got, dict) or set(got) != set(params):
        have = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"return one amount per layer, keys {sorted(params)}; got {have}.")
    for name, a in got.items():
        if not isinstance(a, float) or not 0.0 <= a < 1.0 or math.isnan(a):
            raise AssertionError(f"{name}: amount {a!r} is not a fraction in [0, 1).")
    total = sum(params.values())
    pruned = {n: round(got[n] * params[n]) for n in params}  # what prune.l1_unstructured removes
    kept = total - sum(pruned.values())
    budget = inputs["keep_fraction"] * total
    if kept > budget:
        raise AssertionError(
            f"budget: {kept} of {total} weights kept ({kept / total:.1%}) but at most "
            f"{inputs['keep_fraction']:.0%} ({int(budget)}) may stay. Count round(amount·n) pruned per layer; "
            f"most weights are in {max(params, key=params.get)}."
        )
    from ..models import CourseCNN

    model = CourseCNN()
    model.load_state_dict(expected["state"])
    fp32 = _accuracy(model, expected["test_x"], expected["test_y"])
    modules = dict(model.named_modules())
    for name, a in got.items():
        prune.l1_unstructured(modules[name], "weight", amount=a)
    acc = _accuracy(model, expected["test_x"], expected["test_y"])
    drop = 100 * (fp32 - acc)
    msg = (
        f"{kept / total:.1%} of the weights kept (budget {inputs['keep_fraction']:.0%}); test accuracy "
        f"{acc:.2%} vs {fp32:.2%} unpruned (drop {drop:+.2f} pt, bound {inputs['max_drop']:g} pt, "
        f"{len(expected['test_y'])} test images)"
    )
    if drop > inputs["max_drop"] + 1e-9:
        worst = min(
            params, key=lambda n: inputs["scan"][n][max(0, sum(a <= got[n] for a in inputs["amounts"]) - 1)]
        )
        raise AssertionError(
            f"{msg}. Prune the layers whose scan stays flat (most weights, least accuracy lost per weight), "
            f"spare the sensitive ones (here {worst} drops most at your amount), and leave a margin: the "
            "scan prunes one layer at a time, so losses add up when several are pruned together."
        )
    return msg


# --- 1.8 prune_whole_model ----------------------------------------------------------------------

_MACS = {0: 0.4, 1: 0.25, 1000: 0.3}
_ACC_FLOOR = 1.5  # points below the unpruned model, after the grader's fine-tune


def course_cnn_macs(c1: int, c2: int, hidden: int = 128, size: int = 16, classes: int = 10) -> int:
    """Multiply-accumulates of one CourseCNN forward pass on one ``size×size`` image (3×3 convs)."""
    s2 = (size // 2) ** 2
    return size * size * c1 * 9 + s2 * c2 * c1 * 9 + c2 * (size // 4) ** 2 * hidden + hidden * classes


def _whole_case(seed: int) -> dict:
    from ..training import pretrained

    return {
        "state": pretrained("course_cnn", progress=False).state_dict(),
        "macs_fraction": _MACS.get(seed, 0.35),
    }


def _whole_run(fn, inputs: dict) -> Any:
    from ..models import CourseCNN

    model = CourseCNN()
    model.load_state_dict(inputs["state"])
    out = fn(model.eval(), inputs["macs_fraction"])
    if not isinstance(out, nn.Module):
        raise TypeError(
            f"prune_whole_model must return the smaller model (an nn.Module), got {type(out).__name__}."
        )
    try:
        c1, c2 = out.features[0].out_channels, out.features[4].out_channels
        hidden = out.classifier[1].out_features
    except (AttributeError, IndexError, TypeError):
        raise TypeError(
            "return a CourseCNN (features[0], features[4] convs; classifier[1] Linear)."
        ) from None
    state = {
        k: v.detach().clone() for k, v in out.state_dict().items() if "_orig" not in k and "_mask" not in k
    }
    return {"channels": [int(c1), int(c2)], "hidden": int(hidden), "state": state}


def _whole_reference(inputs: dict) -> dict:
    from ..data import load_digits_dataset
    from ..models import CourseCNN

    model = CourseCNN()
    model.load_state_dict(inputs["state"])
    test = load_digits_dataset().test
    x, y = torch.stack([a for a, _ in test]), torch.stack([b for _, b in test])
    return {
        "fp32 accuracy": _accuracy(model, x, y),
        "test_x": x,
        "test_y": y,
        "macs": course_cnn_macs(32, 64),
    }


def _seeded_finetune(model: nn.Module) -> None:
    """The grader's fixed recipe: 2 epochs of Adam(5e-4) on the train split, seed 0, one thread."""
    from ..data import load_digits_dataset
    from ..pruning import finetune
    from ..training import seed_everything

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(0)
        finetune(model, load_digits_dataset().loaders(64, seed=0), epochs=2, lr=5e-4, progress=False)
    finally:
        torch.set_num_threads(threads)


def _whole_compare(got: Any, expected: dict, inputs: dict) -> str:
    from ..models import CourseCNN

    c1, c2 = got["channels"]
    model = CourseCNN(channels=(c1, c2), hidden=got["hidden"])
    try:
        model.load_state_dict(got["state"])
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)[:200]]
        raise AssertionError(
            f"the returned model's weights do not fit a CourseCNN with channels ({c1}, {c2}): {first[0].strip()} "
            "Slice every tensor that touches a removed channel: conv weight (out), BN (4 tensors), the next "
            "conv's input channels, and the Linear's input features."
        ) from None
    macs = course_cnn_macs(c1, c2, got["hidden"])
    frac = macs / expected["macs"]
    if frac > inputs["macs_fraction"] + 1e-9:
        hint = (
            " The channel counts did not change: zeroing channels (masks) keeps every multiply-add; remove them."
            if (c1, c2) == (32, 64)
            else ""
        )
        raise AssertionError(
            f"MACs: {macs:,} per image = {frac:.1%} of the unpruned {expected['macs']:,}, budget "
            f"{inputs['macs_fraction']:.0%} (channels ({c1}, {c2})).{hint} conv2 costs 8·8·9·c1·c2."
        )
    x, y = expected["test_x"], expected["test_y"]
    before = _accuracy(model, x, y)
    _seeded_finetune(model)
    acc = _accuracy(model, x, y)
    drop = 100 * (expected["fp32 accuracy"] - acc)
    msg = (
        f"channels ({c1}, {c2}): {frac:.1%} of the MACs (budget {inputs['macs_fraction']:.0%}); test accuracy "
        f"{before:.2%} right after pruning, {acc:.2%} after the grader's 2-epoch fine-tune vs "
        f"{expected['fp32 accuracy']:.2%} unpruned (drop {drop:+.2f} pt, bound {_ACC_FLOOR:g} pt)"
    )
    if drop > _ACC_FLOOR + 1e-9:
        raise AssertionError(
            f"{msg}. Spend the budget where it buys accuracy (conv2's cost is c1·c2: balance the two), "
            "and keep the channels that matter (e.g. BN |γ| or filter norms), with their weights aligned."
        )
    return msg


EXERCISES = [
    Exercise(
        id="1.6",
        title="choose_sparsities: per-layer amounts from a sensitivity scan",
        target="choose_sparsities",
        points=4,
        make_case=_choose_case,
        run=_choose_run,
        reference=_choose_reference,
        compare=_choose_compare,
        public_seeds=(0, 1, 2),
        hidden_seeds=(1000, 1001),
        hint="greedy: start from 0 everywhere; while the budget is not met, raise by one grid step the "
        "layer that loses the least scan accuracy per weight removed.",
    ),
    Exercise(
        id="1.8",
        title="prune_whole_model: a smaller course CNN within a MACs budget",
        target="prune_whole_model",
        points=4,
        make_case=_whole_case,
        run=_whole_run,
        reference=_whole_reference,
        compare=_whole_compare,
        public_seeds=(0, 1),
        hidden_seeds=(1000,),
        timeout=180.0,
        hint="course_cnn_macs(c1, c2) counts the cost; pick (c1, c2) within the budget (conv2 dominates: "
        "8·8·9·c1·c2) and build the model with course_utils.pruning.remove_channels(model, (a1, a2)).",
    ),
]
