"""Pruning helpers shared by the pruning lessons, the capstone and the benchmark.

Two kinds of pruning live here:

* **masking** (``torch.nn.utils.prune``): ``w = w_orig ⊙ m`` with a binary mask ``m``. The
  tensor keeps its shape, so parameter count, FLOPs and (dense) latency stay the same;
* **physical channel removal** for :class:`~course_utils.models.CourseCNN`: the output
  channels with the lowest importance score (:data:`CHANNEL_CRITERIA`; default BN ``|γ|``)
  are dropped and new, smaller Conv/BN/Linear layers are built (the next layer's input
  channels are sliced to match), so parameters, FLOPs and latency all shrink.

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

from .models import CourseCNN

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


# --- physical channel removal -----------------------------------------------------------


def channel_norms(weight: torch.Tensor, n: int | float = 1, dim: int = 0) -> torch.Tensor:
    """``‖W[c]‖_n`` for every slice ``c`` along ``dim`` (the norm ``prune.ln_structured`` ranks by)."""
    if weight.dim() < 2:
        raise ValueError(f"channel norms need a ≥2-D weight, got shape {tuple(weight.shape)}.")
    dims = [d for d in range(weight.dim()) if d != dim % weight.dim()]
    return torch.linalg.vector_norm(weight.detach(), ord=n, dim=dims)


def kept_channels(
    weight: torch.Tensor, amount: int | float, n: int | float = 1, dim: int = 0
) -> torch.Tensor:
    """Sorted indices of the channels ``prune.ln_structured(amount, n, dim)`` keeps (largest norms)."""
    return top_channels(channel_norms(weight, n, dim), amount)


#: Channel-importance criteria of :func:`channel_importance` (score of output channel ``c``):
#: ``"filter"`` ``‖W[c]‖_n`` (n=1) · ``"bn_gamma"`` ``|γ_c|`` of the following BatchNorm
#: (network slimming, Liu et al. 2017) · ``"folded"`` ``‖W[c]‖_n · |γ_c|/√(σ²_c+ε)``, the norm of
#: the BN-folded filter (n=1) · ``"next_input"`` ``‖W_next[:, c]‖_n``, the weights that read
#: channel ``c`` in the next layer (n=2, MIT 6.5940 lab 1) · ``"random"`` uniform scores.
CHANNEL_CRITERIA: tuple[str, ...] = ("bn_gamma", "next_input", "filter", "folded", "random")

#: Measured in lesson 1 and ``benchmarks/channel_criteria.py``: behind a bias-free conv + BN
#: the filter norm is scale-free and ranks no better than chance; ``bn_gamma`` and
#: ``next_input`` tie within the noise; ``bn_gamma`` needs only the BN layer.
DEFAULT_CHANNEL_CRITERION = "bn_gamma"

_DEFAULT_NORM = {"filter": 1, "folded": 1, "next_input": 2}


def top_channels(scores: torch.Tensor, amount: int | float) -> torch.Tensor:
    """Sorted indices of the channels kept when ``amount`` of them (lowest ``scores``) are removed."""
    keep = scores.numel() - n_to_prune(amount, scores.numel())
    if keep < 1:
        raise ValueError(f"amount={amount} would remove all {scores.numel()} channels; keep at least one.")
    return torch.topk(scores, k=keep, largest=True).indices.sort().values


def channel_importance(
    model: CourseCNN,
    criterion: str = DEFAULT_CHANNEL_CRITERION,
    n: int | float | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance of the output channels of both convs of a :class:`CourseCNN` (higher = keep).

    ``criterion`` is one of :data:`CHANNEL_CRITERIA`; ``n`` the norm order of the norm-based
    criteria (default: 1 for ``filter``/``folded``, 2 for ``next_input``); ``seed`` seeds
    ``random``. For the second conv, the "next layer" is the first Linear: channel ``c`` owns
    its ``(S/4)²`` consecutive input features after ``Flatten``. Masks are applied first.
    """
    if criterion not in CHANNEL_CRITERIA:
        raise ValueError(
            f"Unknown channel criterion {criterion!r}; choose one of {', '.join(CHANNEL_CRITERIA)}."
        )
    if not isinstance(model, CourseCNN):
        raise TypeError(f"channel_importance works on CourseCNN, got {type(model).__name__}.")
    src = make_permanent(clone_model(model))
    conv1, bn1, conv2, bn2 = src.features[0], src.features[1], src.features[4], src.features[5]
    lin1 = src.classifier[1]
    order = _DEFAULT_NORM.get(criterion, 1) if n is None else n
    if criterion == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(conv1.out_channels, generator=g), torch.rand(conv2.out_channels, generator=g)
    if criterion == "bn_gamma":
        return bn1.weight.detach().abs(), bn2.weight.detach().abs()
    if criterion == "next_input":
        w_next = lin1.weight.detach().reshape(lin1.out_features, conv2.out_channels, -1)
        return channel_norms(conv2.weight, order, dim=1), channel_norms(w_next, order, dim=1)
    s1, s2 = channel_norms(conv1.weight, order), channel_norms(conv2.weight, order)
    if criterion == "folded":
        s1 = s1 * (bn1.weight.detach() / (bn1.running_var + bn1.eps).sqrt()).abs()
        s2 = s2 * (bn2.weight.detach() / (bn2.running_var + bn2.eps).sqrt()).abs()
    return s1, s2


def slice_conv2d(
    conv: nn.Conv2d, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None
) -> nn.Conv2d:
    """A new Conv2d with only output channels ``out_idx`` and input channels ``in_idx``."""
    if conv.groups != 1:
        raise ValueError("slice_conv2d supports groups=1 convolutions only.")
    w = conv.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(
        w.shape[1],
        w.shape[0],
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if conv.bias is not None:
            b = conv.bias.detach()
            new.bias.copy_(b if out_idx is None else b[out_idx])
    return new


def slice_batchnorm2d(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    """A new BatchNorm2d over channels ``idx`` (affine weights and running statistics sliced)."""
    new = nn.BatchNorm2d(
        len(idx),
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
    )
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight.detach()[idx])
            new.bias.copy_(bn.bias.detach()[idx])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def slice_linear(
    linear: nn.Linear, in_idx: torch.Tensor | None = None, out_idx: torch.Tensor | None = None
) -> nn.Linear:
    """A new Linear with only input features ``in_idx`` and output features ``out_idx``."""
    w = linear.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=linear.bias is not None).to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if linear.bias is not None:
            b = linear.bias.detach()
            new.bias.copy_(b if out_idx is None else b[out_idx])
    return new


def remove_channels(
    model: CourseCNN,
    amount: int | float | tuple[int | float, int | float],
    criterion: str = DEFAULT_CHANNEL_CRITERION,
    n: int | float | None = None,
    seed: int = 0,
) -> CourseCNN:
    """A new, smaller :class:`CourseCNN` without the least important conv channels.

    Importance is :func:`channel_importance` (``criterion``, ``n``, ``seed``; default BN ``|γ|``).
    ``amount`` (one value for both convs or a pair) counts like ``prune.ln_structured``:
    conv ``c`` keeps output channels ``K_c``; its BatchNorm keeps ``K_c``; the next conv
    keeps input channels ``K_1``; the first Linear keeps the input features of ``K_2`` (each
    channel owns ``(S/4)²`` consecutive features after ``Flatten``). The input model is unchanged.
    Masks from ``torch.nn.utils.prune`` are applied first (``weight_orig ⊙ weight_mask``).
    """
    if not isinstance(model, CourseCNN):
        raise TypeError(f"remove_channels works on CourseCNN, got {type(model).__name__}.")
    src = make_permanent(clone_model(model))
    a1, a2 = amount if isinstance(amount, tuple) else (amount, amount)
    conv1, bn1, conv2, bn2 = src.features[0], src.features[1], src.features[4], src.features[5]
    lin1, lin2 = src.classifier[1], src.classifier[3]
    s1, s2 = channel_importance(src, criterion, n, seed)
    k1, k2 = top_channels(s1, a1), top_channels(s2, a2)
    spatial = lin1.in_features // conv2.out_channels
    feat_idx = (k2[:, None] * spatial + torch.arange(spatial)).reshape(-1)

    image_size = int(round(spatial**0.5)) * 4
    new = CourseCNN(
        channels=(len(k1), len(k2)),
        hidden=lin1.out_features,
        in_channels=conv1.in_channels,
        image_size=image_size,
        num_classes=lin2.out_features,
    )
    new.quant, new.dequant = src.quant, src.dequant
    new.features[0] = slice_conv2d(conv1, out_idx=k1)
    new.features[1] = slice_batchnorm2d(bn1, k1)
    new.features[4] = slice_conv2d(conv2, out_idx=k2, in_idx=k1)
    new.features[5] = slice_batchnorm2d(bn2, k2)
    new.classifier[1] = slice_linear(lin1, in_idx=feat_idx)
    new.classifier[3] = slice_linear(lin2)
    return new.train(model.training)


@dataclass(frozen=True)
class CriterionResult:
    """Accuracy of one channel criterion: right after removal and after a short fine-tune.

    One entry per draw (``random``: one per seed; the other criteria are deterministic: one).
    """

    criterion: str
    removed: list[float]
    finetuned: list[float]
    n: int  # examples the accuracies were measured on


def _fresh_train_loader(loaders: dict, seed: int) -> dict:
    """The same loaders, but the training one restarts its shuffling from ``seed`` (fair comparisons)."""
    from torch.utils.data import DataLoader

    train = loaders["train"]
    g = torch.Generator().manual_seed(seed)
    return {
        **loaders,
        "train": DataLoader(train.dataset, batch_size=train.batch_size, shuffle=True, generator=g),
    }


def compare_channel_criteria(
    model: CourseCNN,
    loaders: dict,
    amount: int | float = 0.5,
    criteria: Sequence[str] = CHANNEL_CRITERIA,
    epochs: int = 1,
    lr: float = 5e-4,
    random_draws: int = 5,
    eval_split: str = "test",
    progress: bool = True,
) -> dict[str, CriterionResult]:
    """Remove ``amount`` of the channels of both convs by each criterion; accuracy before/after fine-tune.

    Every fine-tune starts from the same seed and data order, so only the kept channels differ.
    ``random`` is drawn ``random_draws`` times (seeds 0, 1, …). ``model`` is unchanged.
    """
    from tqdm.auto import tqdm

    from .training import evaluate, seed_everything

    jobs = [(c, s) for c in criteria for s in (range(random_draws) if c == "random" else [0])]
    out: dict[str, CriterionResult] = {}
    n = len(loaders[eval_split].dataset)
    for crit, seed in tqdm(jobs, desc="channel criteria", disable=not progress, leave=False):
        slim = remove_channels(model, amount, criterion=crit, seed=seed)
        before = evaluate(slim, loaders[eval_split])
        seed_everything(0)
        finetune(slim, _fresh_train_loader(loaders, 0), epochs=epochs, lr=lr, progress=False)
        res = out.setdefault(crit, CriterionResult(crit, [], [], n))
        res.removed.append(before)
        res.finetuned.append(evaluate(slim, loaders[eval_split]))
    return out


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
