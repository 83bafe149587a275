"""Exercise spec for chapter 2 — the lottery ticket with rewinding (Frankle & Carbin 2019; Frankle
et al. 2020).

2.6 ``winning_ticket(model, trained_state, rewind_state, amount)``: the global L1 mask of the
*trained* weights, applied with ``torch.nn.utils.prune`` to the weights *rewound* to an early
training step. Compared with ``prune.global_unstructured`` + ``prune.custom_from_mask``; one SGD
step afterwards must keep the pruned weights at exactly 0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from ..exercise import Exercise, assert_same
from .common import compare_masks

_LAYERS = ("0", "2", "4")


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def _lottery_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    template = _net().state_dict()
    rewind = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in template.items()}
    trained = {k: v + torch.randn(v.shape, generator=g) * 0.3 for k, v in rewind.items()}
    return {
        "trained": trained,
        "rewind": rewind,
        "amount": [0.5, 0.8, 0.9, 0.3][seed % 4],
        "x": torch.randn(6, 12, generator=g),
        "y": torch.randint(0, 4, (6,), generator=g),
    }


def _after(model: nn.Module, masks: Any, inputs: dict) -> dict:
    """Effective weights now, and after one SGD step (pruned weights must stay 0)."""
    weights = {f"{n}.weight": model[int(n)].weight.detach().clone() for n in _LAYERS}
    biases = {f"{n}.bias": model[int(n)].bias.detach().clone() for n in _LAYERS}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    F.cross_entropy(model(inputs["x"]), inputs["y"]).backward()
    opt.step()
    with torch.no_grad():
        model(inputs["x"])  # a pruning hook recomputes weight = weight_orig · mask here
    still = {f"{n}.weight": model[int(n)].weight.detach().clone() for n in _LAYERS}
    if isinstance(masks, dict):
        masks = {str(k): (v.detach().float() if isinstance(v, torch.Tensor) else v) for k, v in masks.items()}
    return {"masks": masks, "weights": weights, "biases": biases, "weights after one SGD step": still}


def _lottery_run(fn, inputs: dict) -> dict:
    model = _net()
    trained = {k: v.clone() for k, v in inputs["trained"].items()}
    rewind = {k: v.clone() for k, v in inputs["rewind"].items()}
    masks = fn(model, trained, rewind, inputs["amount"])
    return _after(model, masks, inputs)


def _lottery_reference(inputs: dict) -> dict:
    model = _net()
    model.load_state_dict(inputs["trained"])
    params = [(model[int(n)], "weight") for n in _LAYERS]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=inputs["amount"])
    masks = {f"{n}.weight": model[int(n)].weight_mask.clone() for n in _LAYERS}
    ticket = _net()
    ticket.load_state_dict(inputs["rewind"])
    for n in _LAYERS:
        prune.custom_from_mask(ticket[int(n)], "weight", masks[f"{n}.weight"])
    return _after(ticket, masks, inputs)


def _lottery_compare(got: Any, expected: dict, inputs: dict) -> None:
    gm, em = got.get("masks"), expected["masks"]
    if not isinstance(gm, dict) or set(gm) != set(em):
        have = sorted(gm) if isinstance(gm, dict) else type(gm).__name__
        raise AssertionError(f"return the masks as a dict with keys {sorted(em)}; got {have}.")
    rewind = torch.cat([inputs["rewind"][k].abs().flatten() for k in em])
    g = torch.cat([gm[k].flatten() for k in em]) if all(isinstance(gm[k], torch.Tensor) for k in em) else None
    e = torch.cat([em[k].flatten() for k in em])
    if g is not None and g.shape == e.shape and not torch.equal(g, e):
        n_prune = int((e == 0).sum())
        if int((g == 0).sum()) == n_prune:
            by_rewind = rewind <= rewind.kthvalue(n_prune).values
            if torch.equal(g == 0, by_rewind):
                raise AssertionError(
                    "masks: you ranked the *rewound* weights; the ticket is found from the magnitudes "
                    "of the *trained* weights, then those positions are reset to the rewind values."
                )
            raise AssertionError(
                f"masks: {n_prune} weights pruned, but not the {n_prune} smallest |trained weight| over all "
                "layers together: the ranking is global (prune.global_unstructured), not per layer."
            )
    for k in em:
        compare_masks(gm[k], em[k], inputs["trained"][k].abs(), path=f"masks[{k!r}]", amount=inputs["amount"])
    try:
        assert_same(got["weights"], expected["weights"], path="weights", atol=1e-6, rtol=1e-6)
    except AssertionError as err:
        raise AssertionError(
            f"{err}\n  The kept weights must hold their *rewind* values (rewind_state), the pruned ones 0."
        ) from None
    assert_same(
        got["biases"], expected["biases"], path="biases (from rewind_state, not pruned)", atol=1e-6, rtol=1e-6
    )
    try:
        assert_same(
            got["weights after one SGD step"], expected["weights after one SGD step"], atol=1e-5, rtol=1e-5
        )
    except AssertionError as err:
        raise AssertionError(
            f"after one SGD step: {err}\n  Pruned weights must stay 0 during retraining: apply the masks with "
            "prune.custom_from_mask (a forward pre-hook), not by zeroing the weights once."
        ) from None


EXERCISES = [
    Exercise(
        id="2.6",
        title="winning_ticket: global mask of the trained weights, rewound values",
        target="winning_ticket",
        points=3,
        make_case=_lottery_case,
        run=_lottery_run,
        reference=_lottery_reference,
        compare=_lottery_compare,
        public_seeds=(0, 1),
        hidden_seeds=(2, 3, 1000),
        hint="load trained_state, prune.global_unstructured over every Linear weight, save the masks; "
        "load rewind_state into the model, then prune.custom_from_mask each weight with its mask.",
    ),
]
