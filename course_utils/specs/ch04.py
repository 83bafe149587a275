"""Exercise specs for chapter 4 — fusion.

4.1 (folding a BatchNorm into the layer after it) is in ``ch04_fold.py``.
4.2 ``fusable_patterns(model)`` lists the name groups that ``torch.ao.quantization.fuse_modules``
accepts for a Sequential-style network, the patterns being the keys of PyTorch's own fuser table.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exercise import Exercise, assert_same
from .common import _safe
from .together import paired_compare, paired_reference, paired_run, with_regular

# --- 4.2 fusable_patterns(model) --------------------------------------------------------------

_LAYERS = ("conv", "bn", "relu", "linear", "bn1d", "pool", "flatten", "dropout", "identity")


def _random_block(g: torch.Generator, conv: bool) -> list[str]:
    choices = (
        [["conv", "bn", "relu"], ["conv", "bn"], ["conv", "relu"], ["bn", "relu"], ["conv"], ["pool"]]
        if conv
        else [["linear", "relu"], ["linear", "bn1d"], ["linear", "bn1d", "relu"], ["linear"], ["dropout"]]
    )
    return choices[int(torch.randint(len(choices), (1,), generator=g))]


def _patterns_case(seed: int) -> dict:
    """A CourseCNN-like layout: ``features`` (convs) and ``classifier`` (linears), or one flat
    Sequential; channel counts are chosen so that every layout runs on 1×8×8 inputs."""
    g = torch.Generator().manual_seed(seed)
    features: list[str] = []
    for _ in range(2 + seed % 3):
        features += _random_block(g, conv=True)
        if seed % 2 == 0:
            features.append("pool" if features[-1] != "pool" else "relu")
    classifier = ["flatten"]
    for _ in range(1 + seed % 2):
        classifier += _random_block(g, conv=False)
    classifier += ["linear"]
    if seed % 3 == 2:
        return {"layout": {"": features + classifier}, "seed": seed}
    return {"layout": {"features": features, "classifier": classifier}, "seed": seed}


def _patterns_edge_cases() -> list[dict]:
    return [
        # nothing to fuse: ReLU before BN, pool between conv and relu ([] counts only with a regular case)
        with_regular(
            {
                "layout": {"features": ["conv", "pool", "relu", "bn"], "classifier": ["flatten", "linear"]},
                "seed": 1,
            },
            _patterns_case(4),
        ),
        # greedy longest match: conv-bn-relu, not conv-bn then a lone relu
        {
            "layout": {"": ["conv", "bn", "relu", "relu", "conv", "relu", "bn", "relu", "flatten", "linear"]},
            "seed": 2,
        },
        # CourseCNN itself
        {
            "layout": {
                "features": ["conv", "bn", "relu", "pool", "conv", "bn", "relu", "pool"],
                "classifier": ["flatten", "linear", "relu", "linear"],
            },
            "seed": 3,
        },
    ]


class _Model(nn.Module):
    def __init__(self, parts: dict[str, nn.Sequential]) -> None:
        super().__init__()
        for name, seq in parts.items():
            self.add_module(name, seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for seq in self.children():
            x = seq(x)
        return x


def _build(layout: dict[str, list[str]], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    channels, features = 1, None  # features = flat size once flattened
    size = 8

    def make(kind: str) -> nn.Module:
        nonlocal channels, features, size
        if kind == "conv":
            channels_out = 4
            m: nn.Module = nn.Conv2d(channels, channels_out, 3, padding=1)
            channels = channels_out
            return m
        if kind == "bn":
            return nn.BatchNorm2d(channels)
        if kind == "pool":
            if size < 2:
                return nn.Identity()
            size //= 2
            return nn.MaxPool2d(2)
        if kind == "flatten":
            features = channels * size * size
            return nn.Flatten()
        if kind == "linear":
            assert features is not None
            m = nn.Linear(features, 6)
            features = 6
            return m
        if kind == "bn1d":
            return nn.BatchNorm1d(features)
        if kind == "dropout":
            return nn.Dropout(0.5)
        if kind == "relu":
            return nn.ReLU()
        return nn.Identity()

    parts = {name: nn.Sequential(*[make(k) for k in kinds]) for name, kinds in layout.items()}
    model: nn.Module = parts[""] if "" in parts else _Model(parts)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong fusion changes the output
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def _kind(m: nn.Module) -> str:
    return {
        nn.Conv2d: "Conv2d",
        nn.BatchNorm2d: "BatchNorm2d",
        nn.BatchNorm1d: "BatchNorm1d",
        nn.ReLU: "ReLU",
        nn.Linear: "Linear",
    }.get(type(m), type(m).__name__)


def _fuser_patterns() -> list[tuple[str, ...]]:
    """The (Conv2d/Linear/BN, …) patterns PyTorch's eager fuser knows, longest first."""
    from torch.ao.quantization.fuser_method_mappings import _DEFAULT_OP_LIST_TO_FUSER_METHOD

    pats = {
        tuple(t.__name__ for t in key)
        for key in _DEFAULT_OP_LIST_TO_FUSER_METHOD
        if all(t in (nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.Linear) for t in key)
    }
    return sorted(pats, key=len, reverse=True)


def _reference_groups(model: nn.Module) -> list[list[str]]:
    patterns = _fuser_patterns()
    groups: list[list[str]] = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = [n for n, _ in seq.named_children()]
        kinds = [_kind(m) for _, m in seq.named_children()]
        i = 0
        while i < len(kinds):
            for pat in patterns:
                if tuple(kinds[i : i + len(pat)]) == pat:
                    groups.append([f"{prefix}.{n}" if prefix else n for n in names[i : i + len(pat)]])
                    i += len(pat)
                    break
            else:
                i += 1
    return groups


def _patterns_after(model: nn.Module, groups: Any, x: torch.Tensor) -> dict:
    from torch.ao.quantization import fuse_modules

    out: dict[str, Any] = {"groups": groups}
    fused = _safe(lambda: fuse_modules(model, groups, inplace=False))
    if isinstance(fused, str):
        out["fuse_modules"] = fused.split(":")[0]
        return out
    out["fuse_modules"] = "ok"
    out["fused output"] = fused(x).detach()
    return out


def _normalize(groups: Any) -> Any:
    if isinstance(groups, (list, tuple)) and all(isinstance(gr, (list, tuple)) for gr in groups):
        return sorted([list(map(str, gr)) for gr in groups])
    return groups


def _patterns_run(fn, inputs: dict) -> dict:
    model = _build(inputs["layout"], inputs["seed"])
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(inputs["seed"]))
    groups = _normalize(fn(model))
    return _patterns_after(_build(inputs["layout"], inputs["seed"]), groups, x)


def _patterns_reference(inputs: dict) -> dict:
    model = _build(inputs["layout"], inputs["seed"])
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(inputs["seed"]))
    return _patterns_after(model, _normalize(_reference_groups(model)), x)


def _patterns_compare(got: Any, expected: dict, inputs: dict) -> None:
    layout = "; ".join(f"{k or '<top>'}: {' '.join(v)}" for k, v in inputs["layout"].items())
    if not isinstance(got, dict) or not isinstance(got.get("groups"), list):
        raise AssertionError("fusable_patterns must return a list of lists of module names.")
    g, e = got["groups"], expected["groups"]
    if g != e:
        missing = [x for x in e if x not in g]
        extra = [x for x in g if x not in e]
        raise AssertionError(
            f"for the layout [{layout}] (names like 'features.0')\n"
            f"  missing groups: {missing}\n  unexpected groups: {extra}\n"
            "Scan each nn.Sequential in order and take the longest pattern fuse_modules knows "
            "(Conv2d-BatchNorm2d-ReLU, Conv2d-BatchNorm2d, Conv2d-ReLU, BatchNorm2d-ReLU, "
            "Linear-BatchNorm1d, Linear-ReLU) at each position; a matched module is not reused."
        )
    assert_same(got, expected, inputs)


EXERCISES = [
    Exercise(
        id="4.2",
        title="fusable_patterns(model)",
        target="fusable_patterns",
        points=2,
        make_case=_patterns_case,
        run=paired_run(_patterns_run),
        reference=paired_reference(_patterns_reference),
        compare=paired_compare(_patterns_compare),
        edge_cases=_patterns_edge_cases,
        public_seeds=(0, 1, 2),
        hint="for name, seq in model.named_modules(): if isinstance(seq, nn.Sequential), walk "
        "seq.named_children() and compare type(m) sequences; prefix names with f'{name}.'.",
    ),
]
