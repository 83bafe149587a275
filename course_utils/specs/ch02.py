"""Exercise specs for chapter 2 — masks and reparameterization.

2.1 ``apply_mask`` behaves like ``prune.custom_from_mask`` · 2.2 ``combine_masks`` reproduces
``PruningContainer`` for two ``l1_unstructured`` calls · 2.3 ``make_permanent`` equals
``prune.remove`` · 2.4 ``finetune_masked`` keeps pruned weights at exactly 0.

The reference runs the same recipe with ``torch.nn.utils.prune`` in place of the student's code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from ..exercise import Exercise, assert_same
from .common import _safe, compare_masks
from .together import paired_compare, paired_reference, paired_run, with_regular

# --- 2.1 apply_mask(module, name, mask) ---------------------------------------------------------


def _module_from(kind: str, tensors: dict[str, torch.Tensor]) -> nn.Module:
    if kind == "linear":
        w = tensors["weight"]
        m: nn.Module = nn.Linear(w.shape[1], w.shape[0])
    else:
        w = tensors["weight"]
        m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=1)
    with torch.no_grad():
        m.weight.copy_(tensors["weight"])
        m.bias.copy_(tensors["bias"])
    return m


def _apply_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    kind = "linear" if seed % 2 == 0 else "conv"
    if kind == "linear":
        tensors = {"weight": torch.randn(4, 6, generator=g), "bias": torch.randn(4, generator=g)}
        x = torch.randn(3, 6, generator=g)
    else:
        tensors = {"weight": torch.randn(3, 2, 3, 3, generator=g), "bias": torch.randn(3, generator=g)}
        x = torch.randn(2, 2, 5, 5, generator=g)
    name = "bias" if seed % 3 == 2 else "weight"
    mask = (torch.rand(tensors[name].shape, generator=g) < 0.6).float()
    if seed % 4 == 1:
        mask = mask.bool()  # custom_from_mask accepts bool masks too
    return {"kind": kind, "tensors": tensors, "x": x, "name": name, "mask": mask}


def _apply_run(fn, inputs: dict) -> dict:
    module = _module_from(inputs["kind"], inputs["tensors"])
    name = inputs["name"]
    original = getattr(module, name)
    fn(module, name, inputs["mask"].clone())
    attr = getattr(module, name, None)
    before_forward = attr.detach().clone() if isinstance(attr, torch.Tensor) else None
    out1 = module(inputs["x"])
    (out1**2).sum().backward()
    orig = getattr(module, name + "_orig", None)
    grad = None if orig is None or orig.grad is None else orig.grad.clone()
    if orig is not None:
        with torch.no_grad():
            orig.add_(1.0)  # the next forward must recompute weight = weight_orig * weight_mask
    out2 = module(inputs["x"]).detach()
    mask_buf = getattr(module, name + "_mask", None)
    return {
        "state_dict_keys": sorted(module.state_dict()),
        "parameters": sorted(n for n, _ in module.named_parameters()),
        "buffers": sorted(n for n, _ in module.named_buffers()),
        f"{name}_mask": mask_buf.detach().float() if isinstance(mask_buf, torch.Tensor) else mask_buf,
        f"{name}_mask dtype": str(mask_buf.dtype) if isinstance(mask_buf, torch.Tensor) else None,
        f"{name}_orig is the original Parameter object": orig is original,
        f"{name} before the first forward": before_forward,
        f"{name} is a Parameter": isinstance(attr, nn.Parameter),
        "output": out1.detach(),
        f"grad of {name}_orig": grad,
        "output after changing the original": out2,
    }


def _apply_reference(inputs: dict) -> dict:
    return _apply_run(lambda m, n, mask: prune.custom_from_mask(m, n, mask), inputs)


def _apply_compare(got: dict, expected: dict, inputs: dict) -> None:
    name = inputs["name"]
    if isinstance(got, dict) and got.get(f"{name}_orig is the original Parameter object") is False:
        raise AssertionError(
            f"{name}_orig is not the Parameter object that was {name}: move that same object "
            f"(module.register_parameter(name + '_orig', orig)) so an optimizer holding it keeps working."
        )
    key = f"{name}_mask dtype"
    if isinstance(got, dict) and got.get(key) is not None and got.get(key) != expected[key]:
        raise AssertionError(
            f"the buffer {name}_mask is {got[key]} but must have the weight's dtype ({expected[key]}), "
            f"as custom_from_mask stores it (the mask given was {inputs['mask'].dtype})."
        )
    assert_same(got, expected, inputs, atol=1e-5, rtol=1e-5)


def _apply_edges() -> list[dict]:
    base = _apply_case(0)
    w = base["tensors"]["weight"]
    return [
        {**base, "mask": torch.ones_like(w)},  # nothing masked
        {**base, "mask": torch.zeros_like(w)},  # everything masked: no gradient at all
    ]


# --- 2.2 combine_masks(t, old_mask, amount) -----------------------------------------------------


def _combine_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = [(6, 5), (3, 4, 3), (20,), (8, 8)][seed % 4]
    t = torch.randn(shape, generator=g)
    old = (torch.rand(shape, generator=g) < 0.7).float()
    remaining = int(old.sum())
    if seed % 2 == 0:
        amount: int | float = round(float(torch.rand((), generator=g)) * 0.8 + 0.1, 3)
    else:
        amount = int(torch.randint(1, max(remaining, 2), (), generator=g))
    return {"t": t, "old_mask": old, "amount": amount}


def _combine_run(fn, inputs: dict) -> Any:
    return fn(inputs["t"].clone(), inputs["old_mask"].clone(), inputs["amount"])


def _combine_reference(inputs: dict) -> torch.Tensor:
    m = nn.Module()
    m.register_parameter("weight", nn.Parameter(inputs["t"].clone()))
    prune.custom_from_mask(m, "weight", inputs["old_mask"])
    prune.l1_unstructured(m, "weight", amount=inputs["amount"])  # the container combines the two
    return m.weight_mask


def _combine_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    old = inputs["old_mask"]
    remaining = int(old.sum())
    amount = inputs["amount"]
    compare_masks(
        got,
        expected,
        inputs["t"].abs(),
        path="mask",
        keep_zero=old,
        amount=amount,
        units=remaining,
        what=f"entries left, not of all {old.numel()}",
    )


def _combine_edges() -> list[dict]:
    base = _combine_case(4)
    t = base["t"]
    ties = torch.tensor([0.3, -0.3, 0.3, 2.0, -1.0, 0.3])
    regular = _combine_case(3)  # answers equal to old_mask or all zeros count only together with it
    return [
        {"t": t, "old_mask": torch.ones_like(t), "amount": 0.4},  # no earlier pruning
        with_regular({"t": t, "old_mask": torch.zeros_like(t), "amount": 0.5}, regular),  # nothing left
        with_regular({**base, "amount": 0}, regular),
        with_regular({**base, "amount": 1.0}, regular),  # prune every remaining entry
        with_regular({**base, "amount": int(base["old_mask"].sum())}, regular),
        {"t": ties, "old_mask": torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0]), "amount": 2},  # ties
    ]


# --- 2.3 make_permanent(module, name) -------------------------------------------------------


def _permanent_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    case = _apply_case(seed)
    case["name"] = "weight"
    case["amount1"] = round(float(torch.rand((), generator=g)) * 0.5 + 0.2, 3)
    case["second"] = seed % 2 == 1  # a second pruning: the hook becomes a PruningContainer
    case["prune_bias"] = seed % 3 == 0  # another pruned tensor whose pruning must stay
    return case


def _pruned_module(inputs: dict) -> nn.Module:
    m = _module_from(inputs["kind"], inputs["tensors"])
    prune.l1_unstructured(m, "weight", amount=inputs["amount1"])
    if inputs["second"]:
        prune.ln_structured(m, "weight", amount=1, n=2, dim=0)
    if inputs["prune_bias"]:
        prune.l1_unstructured(m, "bias", amount=1)
    return m


def _permanent_with(remove: Callable[[nn.Module, str], Any], inputs: dict) -> dict:
    module = _pruned_module(inputs)
    name = inputs["name"]
    orig = getattr(module, name + "_orig")
    remove(module, name)
    value = getattr(module, name, None)
    hooks = sorted(
        f"{type(h).__name__}({h._tensor_name})"
        for h in module._forward_pre_hooks.values()
        if isinstance(h, prune.BasePruningMethod)
    )
    with torch.no_grad():
        out = _safe(module, inputs["x"])
    return {
        "state_dict_keys": sorted(module.state_dict()),
        "parameters": sorted(n for n, _ in module.named_parameters()),
        "buffers": sorted(n for n, _ in module.named_buffers()),
        "pruning hooks left": hooks,
        f"{name} is a Parameter": isinstance(value, nn.Parameter),
        f"{name} is the same Parameter object as {name}_orig was": value is orig,
        f"{name}": value.detach().clone() if isinstance(value, torch.Tensor) else value,
        "output": out,
    }


def _permanent_run(fn, inputs: dict) -> dict:
    return _permanent_with(fn, inputs)


def _permanent_reference(inputs: dict) -> dict:
    return _permanent_with(prune.remove, inputs)


def _permanent_edges() -> list[dict]:
    return [{**_permanent_case(1), "prune_bias": True}, {**_permanent_case(2), "amount1": 0.0}]


# --- 2.4 finetune_masked(model, masks, batches, optimizer) ---------------------------------------


def _mlp(state: dict[str, torch.Tensor]) -> nn.Module:
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    m.load_state_dict(state)
    return m


def _finetune_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    template = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).state_dict()
    state = {k: torch.randn(v.shape, generator=g) * 0.5 for k, v in template.items()}
    masks = {k: (torch.rand(state[k].shape, generator=g) < 0.5).float() for k in ("0.weight", "2.weight")}
    batches = [(torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(4)]
    return {"state": state, "masks": masks, "batches": batches, "optimizer": ["sgd", "adam"][seed % 2]}


def _optimizer(kind: str, params) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    return torch.optim.Adam(params, lr=0.05)


def _record_modes(model: nn.Module) -> list[bool]:
    """Put ``model`` in eval mode and record ``model.training`` at every forward from now on."""
    modes: list[bool] = []
    model.eval()
    model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    return modes


def _finetune_result(
    model: nn.Module, losses: Any, masks: dict[str, torch.Tensor], modes: list[bool]
) -> dict:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    zeros = all(k in params and bool((params[k][masks[k] == 0] == 0).all()) for k in masks)
    if isinstance(losses, (list, tuple)):
        losses = [float(v) for v in losses]
    return {
        "pruned weights are exactly 0": zeros,
        "losses": losses,
        "state_dict": state,
        "training mode in every forward": bool(modes) and all(modes),
    }


def _finetune_run(fn, inputs: dict) -> dict:
    model = _mlp(inputs["state"])
    modes = _record_modes(model)  # handed over in eval mode: the loop must switch to training
    opt = _optimizer(inputs["optimizer"], model.parameters())
    masks = {k: v.clone() for k, v in inputs["masks"].items()}
    losses = fn(model, masks, list(inputs["batches"]), opt)
    return _finetune_result(model, losses, inputs["masks"], modes)


def _finetune_reference(inputs: dict) -> dict:
    model = _mlp(inputs["state"])
    modes = _record_modes(model)
    opt = _optimizer(inputs["optimizer"], model.parameters())  # weight_orig is the same Parameter
    modules = dict(model.named_modules())
    for key, mask in inputs["masks"].items():
        mname, pname = key.rsplit(".", 1)
        prune.custom_from_mask(modules[mname], pname, mask)
    losses = []
    model.train()
    for x, y in inputs["batches"]:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for key in inputs["masks"]:
        mname, pname = key.rsplit(".", 1)
        prune.remove(modules[mname], pname)
    return _finetune_result(model, losses, inputs["masks"], modes)


def _finetune_compare(got: dict, expected: dict, inputs: dict) -> None:
    if isinstance(got, dict) and got.get("training mode in every forward") is False:
        raise AssertionError(
            "the model was not in training mode during training (it was handed over in eval mode): "
            "call model.train() first, as the exercise asks."
        )
    assert_same(got, expected, inputs, atol=1e-5, rtol=1e-4)


def _finetune_edges() -> list[dict]:
    base = _finetune_case(0)
    ones = {k: torch.ones_like(v) for k, v in base["masks"].items()}
    return [{**base, "masks": ones}, {**_finetune_case(3), "batches": base["batches"][:1]}]


EXERCISES = [
    Exercise(
        id="2.1",
        title="apply_mask(module, name, mask) like prune.custom_from_mask",
        target="apply_mask",
        points=3,
        make_case=_apply_case,
        run=_apply_run,
        reference=_apply_reference,
        compare=_apply_compare,
        edge_cases=_apply_edges,
        hint="move the Parameter to name+'_orig' (del module._parameters[name]), register the mask "
        "as buffer name+'_mask' (float), set the plain attribute name = orig * mask now, and add a "
        "forward pre-hook that recomputes it before every forward.",
    ),
    Exercise(
        id="2.2",
        title="combine_masks(t, old_mask, amount) like PruningContainer",
        target="combine_masks",
        points=2,
        make_case=_combine_case,
        run=paired_run(_combine_run),
        reference=paired_reference(_combine_reference),
        compare=paired_compare(_combine_compare),
        edge_cases=_combine_edges,
        hint="only the entries with old_mask == 1 take part: run the L1 rule on t[old_mask == 1] "
        "(amount relative to how many are left) and write the result back into a copy of old_mask.",
    ),
    Exercise(
        id="2.3",
        title="make_permanent(module, name) like prune.remove",
        target="make_permanent",
        points=2,
        make_case=_permanent_case,
        run=_permanent_run,
        reference=_permanent_reference,
        edge_cases=_permanent_edges,
        hint="find the BasePruningMethod hook whose _tensor_name == name and delete only that one; "
        "store orig * mask in the *same* Parameter object (orig.data = …), delete name+'_orig' and "
        "name+'_mask', then setattr(module, name, orig).",
    ),
    Exercise(
        id="2.4",
        title="finetune_masked(model, masks, batches, optimizer)",
        target="finetune_masked",
        points=2,
        make_case=_finetune_case,
        run=_finetune_run,
        reference=_finetune_reference,
        compare=_finetune_compare,
        edge_cases=_finetune_edges,
        hint="zero the pruned weights before the first forward, then after every optimizer.step() "
        "multiply each masked parameter by its mask again (in place, under torch.no_grad()); "
        "return the list of loss.item() per batch.",
    ),
]
