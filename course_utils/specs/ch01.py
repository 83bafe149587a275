"""Exercise specs for chapter 1 — pruning theory.

1.1 ``sparsity(model)`` · 1.2 ``l1_unstructured_mask`` (= ``prune.l1_unstructured``'s mask) ·
1.3 ``ln_structured_mask`` (= ``prune.ln_structured``'s mask) · 1.4 a fixed
``prune_by_threshold`` (keeps shapes). 1.5 (channel removal) is in ``ch01_channels.py``.

The mask helpers (``compare_masks``, ``_safe`` …) live in ``common.py``; they are re-exported here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ..exercise import Exercise, assert_same
from .common import _holder, _n_pruned_text, _safe, compare_masks  # noqa: F401 (re-exported)
from .together import paired_compare, paired_reference, paired_run, with_regular

# --- 1.1 sparsity(model) ---------------------------------------------------------------


def _sparsity_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 4), (8,), (3, 8, 3, 3)]
    tensors = []
    for s in shapes:
        t = torch.randn(s, generator=g)
        t[torch.rand(s, generator=g) < 0.3 + 0.1 * (seed % 5)] = 0.0
        tensors.append(t)
    return {"tensors": tensors}


def _sparsity_model(tensors: list[torch.Tensor]) -> nn.Module:
    m = nn.Module()
    for i, t in enumerate(tensors):
        m.register_parameter(f"p{i}", nn.Parameter(t.clone()))
    m.register_buffer("running", torch.zeros(5))  # buffers are not parameters: not counted
    return m


def _sparsity_run(fn, inputs: dict) -> float:
    return float(fn(_sparsity_model(inputs["tensors"])))


def _sparsity_reference(inputs: dict) -> float:
    ts = inputs["tensors"]
    return sum(int((t == 0).sum()) for t in ts) / sum(t.numel() for t in ts)


def _sparsity_edges() -> list[dict]:
    regular = _sparsity_case(3)  # constant answers (1.0, 0.0) count only together with it
    return [
        with_regular({"tensors": [torch.zeros(4, 4), torch.zeros(3)]}, regular),  # all zero: 1.0
        with_regular({"tensors": [torch.ones(5, 2), torch.full((7,), 2.0)]}, regular),  # dense: 0.0
        {"tensors": [torch.tensor([0.0, -0.0, 1e-30, 3.0])]},  # -0.0 is zero, 1e-30 is not
    ]


# --- 1.2 l1_unstructured_mask(w, amount) ---------------------------------------------------

_SHAPES_12 = [(6, 5), (4, 3, 3, 3), (17,), (8, 16), (3, 7)]


def _amount_for(g: torch.Generator, seed: int, n: int) -> int | float:
    """Even seeds: a float fraction; odd seeds: an int count."""
    if seed % 2 == 0:
        return round(float(torch.rand((), generator=g)) * 0.9 + 0.05, 3)
    return int(torch.randint(1, n, (), generator=g))


def _l1_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = _SHAPES_12[seed % len(_SHAPES_12)]
    w = torch.randn(shape, generator=g)
    return {"w": w, "amount": _amount_for(g, seed, w.numel())}


def _raises_value_error(fn, *args) -> str:
    """``"ValueError"`` when ``fn(*args)`` raises one, else what happened instead."""
    try:
        fn(*args)
    except ValueError:
        return "ValueError"
    except NotImplementedError:
        raise
    except Exception as err:
        return f"raised {type(err).__name__}, not ValueError"
    return "no error"


def _l1_run(fn, inputs: dict) -> Any:
    if "invalid_amounts" in inputs:
        return [_raises_value_error(fn, inputs["w"].clone(), a) for a in inputs["invalid_amounts"]]
    return fn(inputs["w"].clone(), inputs["amount"])


def _l1_reference(inputs: dict) -> Any:
    if "invalid_amounts" in inputs:
        return [
            _raises_value_error(_l1_reference, {"w": inputs["w"], "amount": a})
            for a in inputs["invalid_amounts"]
        ]
    m = _holder(inputs["w"])
    prune.l1_unstructured(m, "weight", amount=inputs["amount"])
    return m.weight_mask


def _l1_compare(got: Any, expected: Any, inputs: dict) -> None:
    if "invalid_amounts" in inputs:
        n = inputs["w"].numel()
        for a, g, e in zip(inputs["invalid_amounts"], got, expected):
            if g != e:
                allowed = "[0, 1] (a float)" if isinstance(a, float) else f"[0, {n}] (an int count)"
                raise AssertionError(
                    f"amount={a!r} is outside {allowed}: the exercise requires a ValueError, "
                    f"but your function gave: {g}."
                )
        assert_same(got, expected, inputs, path="errors for invalid amounts")
        return
    compare_masks(got, expected, inputs["w"].abs(), amount=inputs["amount"], path="mask")


def _l1_edges() -> list[dict]:
    g = torch.Generator().manual_seed(7)
    w = torch.randn(4, 5, generator=g)
    ties = torch.tensor([[0.5, -0.5, 0.5, 1.0], [-1.0, 0.5, 2.0, -0.5]])
    regular = _l1_case(3)  # all-ones / all-zeros answers count only together with it
    return [
        with_regular({"w": w, "amount": 0.0}, regular),
        with_regular({"w": w, "amount": 0}, regular),
        with_regular({"w": w, "amount": 1.0}, regular),
        with_regular({"w": w, "amount": 20}, regular),  # every entry
        with_regular({"w": w, "invalid_amounts": [1.5, -0.1, -1, 21]}, regular),  # ValueError
        {"w": ties, "amount": 3},  # four entries tie at |0.5|
        {"w": torch.randn(6, generator=g), "amount": 0.25},  # round(1.5) = 2, int() gives 1
        {"w": torch.randn(10, generator=g), "amount": 0.25},  # round(2.5) = 2 (half to even)
        {"w": torch.randn(10, generator=g), "amount": 0.75},  # round(7.5) = 8
    ]


# --- 1.3 ln_structured_mask(w, amount, n, dim) ------------------------------------------------

_CASES_13 = [((8, 4, 3, 3), 1, 0), ((6, 10), 2, 1), ((5, 3, 2), float("inf"), -1), ((4, 6, 3, 3), 2, 1)]


def _ln_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape, n, dim = _CASES_13[seed % len(_CASES_13)]
    w = torch.randn(shape, generator=g)
    return {"w": w, "amount": _amount_for(g, seed, shape[dim]), "n": n, "dim": dim}


def _ln_run(fn, inputs: dict) -> Any:
    return fn(inputs["w"].clone(), inputs["amount"], inputs["n"], inputs["dim"])


def _ln_reference(inputs: dict) -> torch.Tensor:
    m = _holder(inputs["w"])
    prune.ln_structured(m, "weight", amount=inputs["amount"], n=inputs["n"], dim=inputs["dim"])
    return m.weight_mask


def _channel_scores(w: torch.Tensor, n: Any, dim: int) -> torch.Tensor:
    """``‖w[c]‖_n`` broadcast back to ``w``'s shape (each entry carries its channel's norm)."""
    dim = dim % w.dim()
    dims = [d for d in range(w.dim()) if d != dim]
    norms = torch.linalg.vector_norm(w, ord=n, dim=dims, keepdim=True)
    return norms.expand_as(w)


def _ln_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    w, dim = inputs["w"], inputs["dim"]
    if isinstance(got, torch.Tensor) and got.shape == w.shape:
        d = dim % w.dim()
        per_channel = got.detach().float().movedim(d, 0).reshape(w.shape[d], -1)
        if not bool((per_channel == per_channel[:, :1]).all()):
            raise AssertionError(
                f"mask: structured pruning keeps or drops whole slices along dim={dim}, "
                "but your mask mixes 0 and 1 inside one slice."
            )
    compare_masks(
        got,
        expected,
        _channel_scores(w, inputs["n"], dim),
        amount=inputs["amount"],
        units=w.shape[dim],
        what=f"slices along dim={dim}",
    )


def _ln_edges() -> list[dict]:
    g = torch.Generator().manual_seed(11)
    w = torch.randn(6, 4, 3, generator=g)
    tied = torch.randn(5, 4, generator=g)
    tied[3] = tied[1].flip(0)  # rows 1 and 3 have equal norms
    tied[1] *= 0.1
    tied[3] = tied[1].flip(0)
    regular = _ln_case(3)  # all-ones / all-zeros answers count only together with it
    return [
        with_regular({"w": w, "amount": 0.0, "n": 2, "dim": 0}, regular),
        with_regular({"w": w, "amount": 0, "n": 1, "dim": 1}, regular),
        with_regular({"w": w, "amount": 1.0, "n": 2, "dim": 0}, regular),
        with_regular({"w": w, "amount": 3, "n": 1, "dim": -1}, regular),  # every slice along the last dim
        {"w": tied, "amount": 1, "n": 2, "dim": 0},  # the two smallest rows tie
        {"w": w, "amount": 0.5, "n": float("inf"), "dim": 1},  # round(2.0) = 2
        {"w": torch.randn(10, 2, generator=g), "amount": 0.25, "n": 1, "dim": 0},  # round(2.5) = 2
    ]


# --- 1.4 prune_by_threshold(model, threshold) (the fixed version) -------------------------------


def _threshold_net() -> nn.Module:
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    # 2-D, its name contains "weight" but does not end in it: not a layer weight, never pruned
    m.register_parameter("weight_scale", nn.Parameter(torch.ones(3, 3)))
    return m


def _threshold_model(state: dict[str, torch.Tensor]) -> nn.Module:
    m = _threshold_net()
    m.load_state_dict(state)
    return m.eval()


def _threshold_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) for k, v in _threshold_model_template().items()}
    state["1.running_var"] = state["1.running_var"].abs() + 0.5
    state["1.num_batches_tracked"] = torch.tensor(3)
    w = state["0.weight"]
    threshold = float(w.abs().flatten()[int(torch.randint(w.numel(), (), generator=g))])  # an exact tie
    return {"state": state, "threshold": threshold, "x": torch.randn(3, 2, 6, 6, generator=g)}


def _threshold_model_template() -> dict[str, torch.Tensor]:
    return _threshold_net().state_dict()


def _threshold_run(fn, inputs: dict) -> dict:
    model = _threshold_model(inputs["state"])
    before = {n: p for n, p in model.named_parameters()}
    masks = fn(model, inputs["threshold"])
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    same = all(p is before.get(n) for n, p in model.named_parameters()) and len(before) == len(
        dict(model.named_parameters())
    )
    with torch.no_grad():
        out = _safe(model, inputs["x"])
    if isinstance(masks, dict):
        masks = {str(k): (v.detach().float() if isinstance(v, torch.Tensor) else v) for k, v in masks.items()}
    return {"state": state, "same_parameter_objects": same, "output": out, "masks": masks}


def _threshold_reference(inputs: dict) -> dict:
    model = _threshold_model(inputs["state"])
    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() >= 2:
                masks[name] = (p.abs() >= inputs["threshold"]).float()
                p.mul_(masks[name])
        out = model(inputs["x"])
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state": state, "same_parameter_objects": True, "output": out, "masks": masks}


def _threshold_compare(got: Any, expected: dict, inputs: dict) -> None:
    """The stated rules first (which tensors, in place), then everything else."""
    if isinstance(got, dict) and isinstance(got.get("masks"), dict):
        extra = sorted(set(got["masks"]) - set(expected["masks"]))
        if extra:
            raise AssertionError(
                f"you pruned {extra}: prune only parameters whose name ends in 'weight' *and* that "
                "have >= 2 dimensions (BatchNorm's 1-D weight and e.g. 'weight_scale' stay)."
            )
    if isinstance(got, dict) and got.get("same_parameter_objects") is False:
        raise AssertionError(
            "the model's parameters are not the same Parameter objects afterwards: prune in place "
            "(param.mul_(mask) under torch.no_grad()), so an optimizer holding them keeps working."
        )
    assert_same(got, expected, inputs)


def _threshold_edges() -> list[dict]:
    base = _threshold_case(5)
    return [
        {**base, "threshold": 0.0},  # nothing pruned
        {**base, "threshold": 1e9},  # every conv/linear weight pruned
    ]


EXERCISES = [
    Exercise(
        id="1.1",
        title="sparsity(model)",
        target="sparsity",
        points=1,
        make_case=_sparsity_case,
        run=paired_run(_sparsity_run),
        reference=paired_reference(_sparsity_reference),
        compare=paired_compare(assert_same),
        edge_cases=_sparsity_edges,
        hint="count zeros over model.parameters() only (not buffers), divide by the total count.",
    ),
    Exercise(
        id="1.2",
        title="l1_unstructured_mask(w, amount)",
        target="l1_unstructured_mask",
        points=2,
        make_case=_l1_case,
        run=paired_run(_l1_run),
        reference=paired_reference(_l1_reference),
        compare=paired_compare(_l1_compare),
        edge_cases=_l1_edges,
        hint="k = amount if it is an int, else round(amount * w.numel()); zero the k smallest |w| "
        "(torch.topk(..., largest=False)); the mask has w's shape.",
    ),
    Exercise(
        id="1.3",
        title="ln_structured_mask(w, amount, n, dim)",
        target="ln_structured_mask",
        points=2,
        make_case=_ln_case,
        run=paired_run(_ln_run),
        reference=paired_reference(_ln_reference),
        compare=paired_compare(_ln_compare),
        edge_cases=_ln_edges,
        hint="norm of each slice along dim over all other dims (torch.linalg.vector_norm(ord=n)); "
        "keep the channels-k largest; the count k is computed from w.shape[dim], not w.numel().",
    ),
    Exercise(
        id="1.4",
        title="prune_by_threshold(model, threshold), fixed",
        target="prune_by_threshold",
        points=2,
        make_case=_threshold_case,
        run=_threshold_run,
        reference=_threshold_reference,
        compare=_threshold_compare,
        edge_cases=_threshold_edges,
        hint="multiply each ≥2-D weight by its mask in place (under torch.no_grad()) instead of "
        "indexing it with the mask; |w| >= threshold is kept; return {name: mask}.",
    ),
]
