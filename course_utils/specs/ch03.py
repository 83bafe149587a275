"""Exercise specs for chapter 3 — custom pruning methods (``BasePruningMethod`` subclasses).

Each class is exercised through torch's own machinery: ``compute_mask`` called directly with
an existing (default) mask, ``cls.apply(module, "weight", …)`` twice (the second call goes
through ``PruningContainer``, which must respect the first mask) and
``prune.global_unstructured(…, pruning_method=cls)``. The reference runs the same recipe on a
small reference class written with plain torch ops (or on ``prune.LnStructured``).

3.1 ``EveryOtherPruning`` · 3.2 ``ThresholdPruning(threshold)`` · 3.3 ``NMPruning(n, m)`` ·
3.4 ``FilterNormPruning(amount, n, dim, min_channels)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ..exercise import Exercise, assert_same
from .common import _safe
from .together import paired_compare, paired_reference, paired_run, with_regular

# --- reference methods (plain torch) --------------------------------------------------------


class _RefEveryOther(prune.BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        mask = default_mask.clone()
        mask.view(-1)[::2] = 0
        return mask


class _RefThreshold(prune.BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        return default_mask * (t.abs() >= self.threshold).to(default_mask.dtype)


class _RefNM(prune.BasePruningMethod):
    PRUNING_TYPE = "global"

    def __init__(self, n: int = 2, m: int = 4) -> None:
        self.n, self.m = n, m

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        if t.dim() < 2 or t.shape[1] % self.m != 0:
            raise ValueError(f"input dim {tuple(t.shape)}[1] is not a multiple of m={self.m}")
        score = (t.abs() * default_mask).movedim(1, -1)  # input channels last
        groups = score.reshape(-1, self.m)
        keep = torch.zeros_like(groups)
        keep.scatter_(1, groups.topk(self.n, dim=1).indices, 1.0)
        return keep.reshape(score.shape).movedim(-1, 1) * default_mask


class _RefFilterNorm(prune.BasePruningMethod):
    PRUNING_TYPE = "structured"

    def __init__(self, amount: int | float, n: int | float = 2, dim: int = 0, min_channels: int = 1) -> None:
        self.amount, self.n, self.dim, self.min_channels = amount, n, dim, min_channels

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        channels = t.shape[self.dim]
        k = self.amount if isinstance(self.amount, int) else round(self.amount * channels)
        k = max(0, min(k, channels - self.min_channels))
        return prune.LnStructured(k, n=self.n, dim=self.dim).compute_mask(t, default_mask)


# --- shared recipe ------------------------------------------------------------------------------


def _linear(w: torch.Tensor) -> nn.Linear:
    m = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        m.weight.copy_(w)
    return m


def _conv(w: torch.Tensor) -> nn.Conv2d:
    m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=False)
    with torch.no_grad():
        m.weight.copy_(w)
    return m


def _module(w: torch.Tensor) -> nn.Module:
    return _linear(w) if w.dim() == 2 else _conv(w)


def _check_class(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, prune.BasePruningMethod)):
        raise TypeError(f"expected a subclass of torch.nn.utils.prune.BasePruningMethod, got {cls!r}")


def _mask(x: Any) -> Any:
    return x.detach().float() if isinstance(x, torch.Tensor) else x


def _recipe(cls: Any, inputs: dict) -> dict:
    """Direct ``compute_mask``; ``apply`` twice (container); ``global_unstructured`` on two modules."""
    _check_class(cls)
    first, second = inputs["first"], inputs["second"]
    out: dict[str, Any] = {"PRUNING_TYPE": getattr(cls, "PRUNING_TYPE", None)}
    w, default = inputs["w"], inputs["default_mask"]
    out["compute_mask(w, default_mask)"] = _mask(cls(**first).compute_mask(w.clone(), default.clone()))

    module = _module(inputs["w"])
    try:  # errors become values, so that compare can first explain a wrong PRUNING_TYPE
        cls.apply(module, "weight", **first)
        out["mask after apply"] = _mask(module.weight_mask)
        cls.apply(module, "weight", **second)
        out["mask after a second apply"] = _mask(module.weight_mask)
        out["state_dict keys"] = sorted(module.state_dict())
        out["weight after the second apply"] = module.weight.detach().clone()
    except NotImplementedError:
        raise
    except Exception as err:
        out["apply"] = f"{type(err).__name__}: {err}"[:300]

    a, b = _module(inputs["w"]), _module(inputs["w2"])
    res = _safe(lambda: prune.global_unstructured([(a, "weight"), (b, "weight")], cls, **first))
    if isinstance(res, str):
        out["global_unstructured"] = res.split(":")[0]  # the exception type
    else:
        out["global_unstructured"] = [_mask(a.weight_mask), _mask(b.weight_mask)]
    if "bad_w" in inputs:
        bad = _safe(lambda: cls(**first).compute_mask(inputs["bad_w"], torch.ones_like(inputs["bad_w"])))
        out["bad input"] = bad.split(":")[0] if isinstance(bad, str) else "no error"
    return out


def _compare(got: Any, expected: dict, inputs: dict) -> None:
    if isinstance(got, dict) and got.get("PRUNING_TYPE") != expected["PRUNING_TYPE"]:
        raise AssertionError(
            f"PRUNING_TYPE is {got.get('PRUNING_TYPE')!r} but this method needs "
            f"{expected['PRUNING_TYPE']!r}: it decides which slice of the tensor PruningContainer "
            "passes to compute_mask on a second pruning (and whether global_unstructured accepts it)."
        )
    if isinstance(got, dict) and "apply" in got and "apply" not in expected:
        raise AssertionError(
            f"compute_mask works when called directly, but cls.apply(module, 'weight', …) raised "
            f"{got['apply']}"
        )
    assert_same(got, expected, inputs)


def _random_default(g: torch.Generator, shape: tuple[int, ...], p: float = 0.8) -> torch.Tensor:
    return (torch.rand(shape, generator=g) < p).float()


# --- 3.1 EveryOtherPruning ---------------------------------------------------------------------


def _every_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = [(5, 6), (3, 2, 3, 3), (4, 7)][seed % 3]
    return {
        "w": torch.randn(shape, generator=g),
        "w2": torch.randn(3, 5, generator=g),
        "default_mask": _random_default(g, shape),
        "first": {},
        "second": {},
    }


def _every_edges() -> list[dict]:
    return [
        {**_every_case(0), "default_mask": torch.zeros(5, 6)},
        {**_every_case(1), "w2": torch.randn(1, 1)},
    ]


# --- 3.2 ThresholdPruning ------------------------------------------------------------------------


def _threshold_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = [(6, 5), (4, 2, 3, 3), (8, 3)][seed % 3]
    w = torch.randn(shape, generator=g)
    t1 = round(float(torch.rand((), generator=g)) * 0.6 + 0.1, 3)
    t2 = t1 + round(float(torch.rand((), generator=g)) * 0.5, 3)
    return {
        "w": w,
        "w2": torch.randn(4, 6, generator=g),
        "default_mask": _random_default(g, shape),
        "first": {"threshold": t1},
        "second": {"threshold": t2},
    }


def _threshold_edges() -> list[dict]:
    base = _threshold_case(0)
    w = base["w"]
    exact = float(w.abs().flatten()[3])  # an entry exactly at the threshold is kept
    return [
        {**base, "first": {"threshold": 0.0}, "second": {"threshold": 0.0}},
        {**base, "first": {"threshold": exact}, "second": {"threshold": 1e9}},  # all pruned at the end
    ]


# --- 3.3 NMPruning ---------------------------------------------------------------------------


def _nm_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, m = [(2, 4), (1, 4), (4, 8), (1, 2)][seed % 4]
    shape = [(6, 16), (4, 8, 3, 3), (3, 8, 1, 1)][seed % 3]
    return {
        "w": torch.randn(shape, generator=g),
        "w2": torch.randn(4, 8, generator=g),
        "default_mask": _random_default(g, shape),
        "first": {"n": n, "m": m},
        "second": {"n": max(1, n // 2), "m": m},
        "bad_w": torch.randn(4, m + 1, generator=g),  # input dim not a multiple of m
    }


def _nm_edges() -> list[dict]:
    base = _nm_case(0)
    return [
        {**base, "first": {"n": 4, "m": 4}, "second": {"n": 4, "m": 4}},  # n = m keeps everything
        {**base, "default_mask": torch.zeros_like(base["w"])},
    ]


# --- 3.4 FilterNormPruning --------------------------------------------------------------------------


def _filter_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = [(8, 3, 3, 3), (6, 4), (10, 2, 3, 3)][seed % 3]
    dim = [0, 1, 0][seed % 3]
    n = [2, 1, float("inf")][seed % 3]
    floor = 1 + seed % 3
    amount1: int | float = 0.5 if seed % 2 == 0 else 2
    default = torch.ones(shape)
    channel = int(torch.randint(shape[dim], (), generator=g))
    default.select(dim, channel).zero_()  # one channel already pruned
    return {
        "w": torch.randn(shape, generator=g),
        "w2": torch.randn(5, 4, generator=g),
        "default_mask": default,
        "first": {"amount": amount1, "n": n, "dim": dim, "min_channels": floor},
        "second": {"amount": 1.0, "n": n, "dim": dim, "min_channels": floor},  # the floor must hold
    }


def _filter_edges() -> list[dict]:
    base = _filter_case(0)
    return [
        {**base, "first": {**base["first"], "amount": 0}},
        with_regular(  # all channels: an all-zero mask counts only together with a regular case
            {**base, "first": {**base["first"], "amount": 1.0, "min_channels": 0}}, _filter_case(1)
        ),
        {**base, "first": {**base["first"], "amount": 0.3, "min_channels": 8}},  # floor = all: nothing pruned
    ]


EXERCISES = [
    Exercise(
        id="3.1",
        title="EveryOtherPruning",
        target="EveryOtherPruning",
        points=1,
        make_case=_every_case,
        run=_recipe,
        reference=lambda inputs: _recipe(_RefEveryOther, inputs),
        compare=_compare,
        edge_cases=_every_edges,
        hint="start from default_mask.clone() and set every other entry of its flat view to 0 "
        "(mask.view(-1)[::2] = 0); PRUNING_TYPE = 'unstructured'.",
    ),
    Exercise(
        id="3.2",
        title="ThresholdPruning(threshold)",
        target="ThresholdPruning",
        points=2,
        make_case=_threshold_case,
        run=_recipe,
        reference=lambda inputs: _recipe(_RefThreshold, inputs),
        compare=_compare,
        edge_cases=_threshold_edges,
        hint="keep |t| >= threshold and never revive what default_mask already pruned: "
        "default_mask * (t.abs() >= self.threshold).",
    ),
    Exercise(
        id="3.3",
        title="NMPruning(n, m) — semi-structured N:M",
        target="NMPruning",
        points=3,
        make_case=_nm_case,
        run=_recipe,
        reference=lambda inputs: _recipe(_RefNM, inputs),
        compare=_compare,
        edge_cases=_nm_edges,
        hint="score = |t| * default_mask; move dim 1 last (movedim(1, -1)), reshape(-1, m), keep the "
        "top-n of each row (topk + scatter_), undo the reshape/movedim, multiply by default_mask; "
        "raise ValueError when t.shape[1] % m != 0.",
    ),
    Exercise(
        id="3.4",
        title="FilterNormPruning(amount, n, dim, min_channels)",
        target="FilterNormPruning",
        points=2,
        make_case=_filter_case,
        run=paired_run(_recipe),
        reference=paired_reference(lambda inputs: _recipe(_RefFilterNorm, inputs)),
        compare=paired_compare(_compare),
        edge_cases=_filter_edges,
        hint="k = amount (int) or round(amount * t.shape[dim]), then k = min(k, channels - min_channels); "
        "keep the channels with the largest L_n norm like prune.ln_structured, times default_mask; "
        "PRUNING_TYPE = 'structured' and self.dim must exist.",
    ),
]
