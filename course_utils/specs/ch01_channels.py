"""Exercise spec for chapter 1 — 1.5 ``prune_conv_bn_conv``: physical removal of the channels of
smallest BN scale |γ| from a conv → BN → conv chain, compared with slicing the originals."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from ..exercise import Exercise, assert_same
from .common import _safe

# --- 1.5 prune_conv_bn_conv(conv1, bn, conv2, amount) -------------------------------------------

_CASES_15 = [(2, 6, 5, True), (3, 8, 4, False), (1, 5, 3, True), (4, 7, 6, False)]


def _chain_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    cin, c, cout, bias = _CASES_15[seed % len(_CASES_15)]
    return {
        "w1": torch.randn(c, cin, 3, 3, generator=g),
        "b1": torch.randn(c, generator=g) if bias else None,
        # signed scales (BN's γ may be negative): the ranking is by |γ|, not γ
        "gamma": (torch.rand(c, generator=g) + 0.3) * (torch.randint(0, 2, (c,), generator=g) * 2 - 1),
        "beta": torch.randn(c, generator=g),
        "mean": torch.randn(c, generator=g),
        "var": torch.rand(c, generator=g) + 0.5,
        "w2": torch.randn(cout, c, 3, 3, generator=g),
        "b2": torch.randn(cout, generator=g),
        "amount": (
            round(float(torch.rand((), generator=g)) * 0.6 + 0.2, 3)
            if seed % 2 == 0
            else int(torch.randint(1, c, (), generator=g))
        ),
        "x": torch.randn(2, cin, 7, 7, generator=g),
    }


def _chain_modules(inputs: dict) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    w1, w2 = inputs["w1"], inputs["w2"]
    conv1 = nn.Conv2d(w1.shape[1], w1.shape[0], 3, padding=1, bias=inputs["b1"] is not None)
    bn = nn.BatchNorm2d(w1.shape[0])
    conv2 = nn.Conv2d(w2.shape[1], w2.shape[0], 3, padding=1)
    with torch.no_grad():
        conv1.weight.copy_(w1)
        if inputs["b1"] is not None:
            conv1.bias.copy_(inputs["b1"])
        bn.weight.copy_(inputs["gamma"])
        bn.bias.copy_(inputs["beta"])
        bn.running_mean.copy_(inputs["mean"])
        bn.running_var.copy_(inputs["var"])
        conv2.weight.copy_(w2)
        conv2.bias.copy_(inputs["b2"])
    return conv1.eval(), bn.eval(), conv2.eval()


def _chain_run(fn, inputs: dict) -> dict:
    mods = _chain_modules(inputs)
    snapshot = [copy.deepcopy(m.state_dict()) for m in mods]
    new = fn(*mods, inputs["amount"])
    if not isinstance(new, (tuple, list)) or len(new) != 3:
        return {"types": f"expected (conv1, bn, conv2), got {type(new).__name__}"}
    unchanged = all(
        all(torch.equal(a, b) for a, b in zip(s.values(), m.state_dict().values()))
        for s, m in zip(snapshot, mods)
    )
    shapes = {
        "conv1.weight": list(new[0].weight.shape) if isinstance(new[0], nn.Conv2d) else None,
        "bn.weight": list(new[1].weight.shape) if isinstance(new[1], nn.BatchNorm2d) else None,
        "bn.running_mean": list(new[1].running_mean.shape) if isinstance(new[1], nn.BatchNorm2d) else None,
        "conv2.weight": list(new[2].weight.shape) if isinstance(new[2], nn.Conv2d) else None,
    }
    chain = nn.Sequential(new[0], new[1], nn.ReLU(), new[2]).eval()
    with torch.no_grad():
        out = _safe(chain, inputs["x"])
    return {
        "types": [type(m).__name__ for m in new],
        "shapes": shapes,
        "kept conv1 filters (largest |γ|, original order)": new[0].weight.detach().clone()
        if isinstance(new[0], nn.Conv2d)
        else None,
        "output": out,
        "new_modules": all(a is not b for a, b in zip(new, mods)),
        "originals_unchanged": unchanged,
    }


def _chain_reference(inputs: dict) -> dict:
    w1, gamma = inputs["w1"], inputs["gamma"]
    # network slimming: the channels whose BN scale |γ| prune.l1_unstructured keeps, in their order
    mask = prune.L1Unstructured(inputs["amount"]).compute_mask(gamma, torch.ones_like(gamma))
    keep = mask.nonzero().squeeze(1)
    b1 = None if inputs["b1"] is None else inputs["b1"][keep]
    h = F.conv2d(inputs["x"], w1[keep], b1, padding=1)
    h = F.batch_norm(
        h, inputs["mean"][keep], inputs["var"][keep], inputs["gamma"][keep], inputs["beta"][keep], eps=1e-5
    )
    out = F.conv2d(F.relu(h), inputs["w2"][:, keep], inputs["b2"], padding=1)
    k, cin, cout = len(keep), w1.shape[1], inputs["w2"].shape[0]
    return {
        "types": ["Conv2d", "BatchNorm2d", "Conv2d"],
        "shapes": {
            "conv1.weight": [k, cin, 3, 3],
            "bn.weight": [k],
            "bn.running_mean": [k],
            "conv2.weight": [cout, k, 3, 3],
        },
        "kept conv1 filters (largest |γ|, original order)": w1[keep],
        "output": out,
        "new_modules": True,
        "originals_unchanged": True,
    }


def _chain_compare(got: Any, expected: dict, inputs: dict) -> None:
    assert_same(got, expected, inputs, atol=1e-4, rtol=1e-4)


def _chain_edges() -> list[dict]:
    base = _chain_case(3)
    c = base["w1"].shape[0]
    return [
        {**base, "amount": 0.0},  # nothing removed: same layers, same output
        {**base, "amount": 0},
        {**base, "amount": c - 1},  # a single channel survives
    ]


EXERCISES = [
    Exercise(
        id="1.5",
        title="prune_conv_bn_conv(conv1, bn, conv2, amount)",
        target="prune_conv_bn_conv",
        points=3,
        make_case=_chain_case,
        run=_chain_run,
        reference=_chain_reference,
        compare=_chain_compare,
        edge_cases=_chain_edges,
        hint="keep = the channels with the largest |bn.weight| (|γ|), as many as prune.l1_unstructured "
        "keeps, sorted back into their original order; slice conv1 weight/bias [keep], BN weight/bias/running "
        "stats [keep], conv2 weight [:, keep]; build new modules, never return the ones you were given.",
    ),
]
