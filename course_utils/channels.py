"""Physical channel removal for :class:`~course_utils.models.CourseCNN`, and which channels to remove.

Output channels with the lowest importance score (:data:`CHANNEL_CRITERIA`; default BN ``|γ|``)
are dropped and new, smaller Conv/BN/Linear layers are built (the next layer's input channels
are sliced to match), so parameters, FLOPs and latency all shrink. Re-exported by
:mod:`course_utils.pruning`, where lessons, capstone and bench call it (so the helpers it
needs from there are imported inside the functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .models import CourseCNN

__all__ = [
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
]


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
    from .pruning import n_to_prune

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
    from .pruning import clone_model, make_permanent

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
    from .pruning import clone_model, make_permanent

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

    from .pruning import finetune
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
