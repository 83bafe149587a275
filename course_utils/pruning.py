"""Pruning helpers shared by the pruning lessons, the capstone and the benchmark.

Two kinds of pruning live here:

* **masking** (``torch.nn.utils.prune``): ``w = w_orig ⊙ m`` with a binary mask ``m``. The
  tensor keeps its shape, so parameter count, FLOPs and (dense) latency stay the same;
* **physical channel removal** for :class:`~course_utils.models.CourseCNN`: the output
  channels with the lowest importance score (:data:`CHANNEL_CRITERIA`; default BN ``|γ|``)
  are dropped and new, smaller Conv/BN/Linear layers are built (the next layer's input
  channels are sliced to match), so parameters, FLOPs and latency all shrink. That part lives in
  :mod:`course_utils.channels` and is re-exported here.

The number of pruned units follows ``torch.nn.utils.prune``: an ``int`` amount is a count, a
``float`` amount in ``[0, 1]`` prunes ``round(amount · n)`` units (Python's round-half-to-even).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from .channels import (
    CHANNEL_CRITERIA,
    DEFAULT_CHANNEL_CRITERION,
    CriterionResult,
    channel_importance,
    channel_norms,
    compare_channel_criteria,
    kept_channels,
    remove_channels,
    slice_batchnorm2d,
    slice_conv2d,
    slice_linear,
    top_channels,
)  # re-exported: pruning.remove_channels & co.

__all__ = [
    "PRUNABLE_TYPES",
    "clone_model",
    "n_to_prune",
    "prunable_parameters",
    "global_magnitude_prune",
    "layerwise_magnitude_prune",
    "make_permanent",
    "pruning_masks",
    "channel_norms",
    "kept_channels",
    "CHANNEL_CRITERIA",
    "DEFAULT_CHANNEL_CRITERION",
    "top_channels",
    "channel_importance",
    "slice_conv2d",
    "slice_batchnorm2d",
    "slice_linear",
    "remove_channels",
    "CriterionResult",
    "compare_channel_criteria",
    "Sensitivity",
    "sensitivity_scan",
    "SparsityCurve",
    "sparsity_accuracy_curve",
    "finetune",
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def clone_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on pruned models.

    After ``prune.*`` the attribute ``weight = weight_orig * weight_mask`` is a non-leaf tensor
    (it has a ``grad_fn``), and ``deepcopy`` refuses non-leaf tensors. Those derived tensors are
    copied detached; the pruning hook recomputes them at the next forward anyway.
    """
    memo: dict[int, object] = {}
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def n_to_prune(amount: int | float, n: int) -> int:
    """How many of ``n`` units ``amount`` prunes, exactly as ``torch.nn.utils.prune`` counts.

    ``int`` → ``amount`` itself (must be ``0 ≤ amount ≤ n``); ``float`` in ``[0, 1]`` →
    ``round(amount · n)`` (round half to even: 0.5 · 5 → 2).
    """
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"amount must be an int (a count) or a float in [0, 1], got {amount!r}.")
    if isinstance(amount, numbers.Integral):
        if not 0 <= amount <= n:
            raise ValueError(f"amount={amount} must be between 0 and the number of units ({n}).")
        return int(amount)
    if not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"amount={amount} is a fraction and must be in [0, 1].")
    return round(float(amount) * n)


def prunable_parameters(
    model: nn.Module, types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES, name: str = "weight"
) -> list[tuple[nn.Module, str]]:
    """``[(module, "weight"), …]`` for every Conv2d/Linear (or ``types``) in ``model``, in order.

    The format ``prune.global_unstructured`` expects.
    """
    return [(m, name) for m in model.modules() if isinstance(m, types)]


def global_magnitude_prune(
    model: nn.Module, amount: int | float, types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES
) -> nn.Module:
    """Prune ``amount`` of all Conv/Linear weights *together*: the smallest ``|w|`` model-wide.

    In place with ``prune.global_unstructured(…, L1Unstructured)`` (masks + hooks); returns ``model``.
    Layers with many small weights lose more than others.
    """
    params = prunable_parameters(model, types)
    if not params:
        raise ValueError(f"{type(model).__name__} has no {', '.join(t.__name__ for t in types)} to prune.")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    return model


def layerwise_magnitude_prune(
    model: nn.Module,
    amount: int | float,
    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES,
    only: Sequence[str] | None = None,
) -> nn.Module:
    """Prune ``amount`` of each Conv/Linear weight separately (``prune.l1_unstructured`` per layer).

    ``only`` restricts pruning to the named modules (e.g. ``["features.0"]``). In place; returns ``model``.
    """
    names = dict(model.named_modules())
    if only is not None:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"No module named {unknown} in the model; have {list(names)[1:]}.")
    for mname, m in names.items():
        if isinstance(m, types) and (only is None or mname in only):
            prune.l1_unstructured(m, "weight", amount=amount)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """``prune.remove`` on every pruned tensor: ``weight = weight_orig ⊙ weight_mask`` as a plain Parameter.

    Masks and hooks are gone afterwards (zeros stay). In place; returns ``model``.
    """
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
    return model


def pruning_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"features.0.weight": mask, …}`` for every tensor pruned with ``torch.nn.utils.prune``."""
    return {
        name[: -len("_mask")]: buf.detach().clone()
        for name, buf in model.named_buffers()
        if name.endswith("_mask")
    }


# --- sensitivity, curves, fine-tuning -----------------------------------------------------


@dataclass(frozen=True)
class Sensitivity:
    """Accuracy after pruning one layer at a time: ``accuracy[layer][i]`` at ``amounts[i]``."""

    amounts: list[float]
    accuracy: dict[str, list[float]]
    baseline: float


def sensitivity_scan(
    model: nn.Module,
    loader: Iterable,
    amounts: Sequence[float] = (0.25, 0.5, 0.7, 0.8, 0.9, 0.95),
    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES,
    progress: bool = True,
) -> Sensitivity:
    """Prune each Conv/Linear alone by L1 magnitude at every amount and measure accuracy (no fine-tune).

    Layers whose accuracy collapses early are *sensitive*: prune them less. ``model`` is unchanged.
    """
    from tqdm.auto import tqdm

    from .training import evaluate

    layers = [name for name, m in model.named_modules() if isinstance(m, types)]
    acc: dict[str, list[float]] = {name: [] for name in layers}
    bar = tqdm(total=len(layers) * len(amounts), desc="sensitivity scan", disable=not progress, leave=False)
    for name in layers:
        for a in amounts:
            pruned = layerwise_magnitude_prune(clone_model(model), a, types, only=[name])
            acc[name].append(evaluate(pruned, loader))
            bar.update()
    bar.close()
    return Sensitivity(list(amounts), acc, evaluate(model, loader))


def finetune(
    model: nn.Module,
    loaders: dict,
    epochs: int = 2,
    lr: float = 5e-4,
    progress: bool = True,
    desc: str = "fine-tune",
) -> nn.Module:
    """Train a (pruned) model a few epochs with Adam(lr); masks keep pruned weights at 0.

    With ``torch.nn.utils.prune`` the trainable tensor is ``weight_orig`` and the gradient
    reaching it is ``∂L/∂w ⊙ m``, so masked entries never come back. In place; returns ``model``.
    """
    from .training import train

    train(model, loaders, epochs=epochs, lr=lr, progress=progress, desc=desc)
    return model.eval()


@dataclass(frozen=True)
class SparsityCurve:
    """Test accuracy at each global sparsity, right after pruning and after fine-tuning."""

    amounts: list[float]
    before: list[float]
    after: list[float]
    baseline: float


def sparsity_accuracy_curve(
    model: nn.Module,
    loaders: dict,
    amounts: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    epochs: int = 2,
    lr: float = 5e-4,
    eval_split: str = "test",
    progress: bool = True,
) -> SparsityCurve:
    """Global L1 pruning at each amount: accuracy before and after ``epochs`` of fine-tuning.

    Each amount starts again from ``model`` (one-shot pruning); ``model`` is unchanged.
    """
    from tqdm.auto import tqdm

    from .training import evaluate

    before, after = [], []
    for a in tqdm(amounts, desc="sparsity sweep", disable=not progress, leave=False):
        pruned = global_magnitude_prune(clone_model(model), a)
        before.append(evaluate(pruned, loaders[eval_split]))
        finetune(pruned, loaders, epochs=epochs, lr=lr, progress=False)
        after.append(evaluate(pruned, loaders[eval_split]))
    return SparsityCurve(list(amounts), before, after, evaluate(model, loaders[eval_split]))
