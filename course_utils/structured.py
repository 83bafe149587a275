"""Structured (channel) pruning of real networks with Torch-Pruning's dependency graph.

Removing output channel ``c`` of a conv is only possible together with every tensor slice that
indexes the same channel: the BN after it, the input channel ``c`` of every conv reading it and,
through a residual sum ``y = f(x) + x``, the output channel ``c`` of *every* producer added into
that sum (and everything downstream of it). Torch-Pruning traces the model once, builds this
``DependencyGraph`` and returns such a *group*; :func:`coupled_group` names its members.

Importance of a channel group (Torch-Pruning sums the member scores; ``normalizer="mean"``):
``magnitude`` ‖W_c‖₂ over the group, ``bn_scale`` |γ_c| of its BNs, ``taylor`` |Σ W·∂L/∂W|
(first-order loss change when the channel is zeroed; needs one backward pass), ``random``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "IMPORTANCES",
    "PruneResult",
    "coupled_group",
    "importance",
    "macs_and_params",
    "prune_channels",
]

#: Importance criteria by name (see the module docstring for the formulas).
IMPORTANCES = ("magnitude", "bn_scale", "taylor", "random")

_PARAM_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def _tp():
    import torch_pruning as tp  # imported lazily: it prints a warning banner on import in some versions

    return tp


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def coupled_group(model: nn.Module, layer: str, example_input: torch.Tensor) -> dict[str, str]:
    """The layers whose weights must shrink when output channels of conv ``layer`` are removed.

    Torch-Pruning's ``DependencyGraph`` is the oracle. Returns ``{module name: "out" | "in"}``
    over parameterized modules (Conv2d, BatchNorm2d, Linear): ``"out"`` when the module's output
    channels shrink (every BN in the group; depthwise convs, whose in and out shrink together),
    ``"in"`` when only its input channels do.
    """
    tp = _tp()
    mods = dict(model.named_modules())
    if layer not in mods or not isinstance(mods[layer], nn.Conv2d):
        raise ValueError(f"{layer!r} is not a Conv2d of this model.")
    names = {m: n for n, m in model.named_modules()}
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    group = dg.get_pruning_group(mods[layer], tp.prune_conv_out_channels, idxs=[0])
    out_handlers = (tp.prune_conv_out_channels, tp.prune_linear_out_channels, tp.prune_batchnorm_out_channels)
    result: dict[str, str] = {}
    for dep, _ in group:
        m = dep.target.module
        if not isinstance(m, _PARAM_TYPES):
            continue
        is_out = dep.handler in out_handlers or isinstance(m, nn.BatchNorm2d) or _is_depthwise(m)
        if result.get(names[m]) != "out":
            result[names[m]] = "out" if is_out else "in"
    return result


def importance(name: str):
    """A Torch-Pruning importance object for one of :data:`IMPORTANCES`."""
    tp = _tp()
    factories: dict[str, Callable[[], object]] = {
        "magnitude": lambda: tp.importance.MagnitudeImportance(p=2),
        "bn_scale": lambda: tp.importance.BNScaleImportance(),
        "taylor": lambda: tp.importance.TaylorImportance(),
        "random": lambda: tp.importance.RandomImportance(),
    }
    if name not in factories:
        raise ValueError(f"Unknown importance {name!r}. Choose one of: {', '.join(IMPORTANCES)}.")
    return factories[name]()


def macs_and_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates of one forward on ``example_input`` and the parameter count."""
    macs, params = _tp().utils.count_ops_and_params(model, example_input)
    return int(macs), int(params)


@dataclass
class PruneResult:
    """The pruned copy and its cost relative to the original (``ratio`` = pruned / original)."""

    model: nn.Module
    params: int
    macs: int
    params_ratio: float
    macs_ratio: float


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float,
    criterion: str = "magnitude",
    global_pruning: bool = False,
    taylor_batches: Iterable | None = None,
    max_pruning_ratio: float = 0.9,
    ignore: Iterable[str] = ("fc", "classifier"),
    seed: int = 0,
) -> PruneResult:
    """Remove ``ratio`` of the channels of every prunable group (a copy; ``model`` is unchanged).

    ``global_pruning=False`` removes the same fraction from each group ("uniform");
    ``True`` ranks all groups' channels together, so layers of unimportant channels lose more —
    capped at ``max_pruning_ratio`` per group (the *channel floor*: a layer never vanishes).
    Output layers whose names start with an ``ignore`` prefix keep their outputs (the classes).
    ``taylor`` needs ``taylor_batches`` of ``(x, y)``: their cross-entropy gradients are accumulated.
    """
    tp = _tp()
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}.")
    m = copy.deepcopy(model).eval()
    macs0, params0 = macs_and_params(m, example_input)
    ignored = [mod for n, mod in m.named_modules() if n and any(n.startswith(p) for p in ignore)]
    ignored = [mod for mod in ignored if isinstance(mod, nn.Linear) or not list(mod.children())]
    pruner = tp.pruner.MetaPruner(
        m,
        example_input,
        importance=importance(criterion),
        global_pruning=global_pruning,
        pruning_ratio=ratio,
        max_pruning_ratio=max_pruning_ratio,
        ignored_layers=ignored,
    )
    if criterion == "taylor":
        if taylor_batches is None:
            raise ValueError("criterion='taylor' needs taylor_batches: a few (x, y) batches for gradients.")
        m.zero_grad()
        for x, y in taylor_batches:
            nn.functional.cross_entropy(m(x), y).backward()
    torch.manual_seed(seed)  # the random criterion draws from torch's generator
    pruner.step()
    m.zero_grad(set_to_none=True)
    macs, params = macs_and_params(m, example_input)
    return PruneResult(m.eval(), params, macs, params / params0, macs / macs0)
