"""Small networks described as plain data, for the static-PTQ spec (5.6): random
``nn.Sequential`` layouts and the course models, rebuilt from a case's description and weights,
with their fusion groups listed from the description (what is fusable: PyTorch's fuser table).

A case holds ``kind``, ``in_channels``, ``layout`` (random kinds: part name → layer names, a
nested list is a nested ``nn.Sequential``) and ``state`` (a state_dict); every random layout runs
on 8×8 images, the CourseCNN and LeNet5 cases on 16×16.
"""

from __future__ import annotations

import torch
from torch import nn

from .ch04 import _fuser_patterns

_CONV_BLOCKS = (
    ["conv", "bn", "relu"],
    ["conv", "bn"],
    ["conv", "relu"],
    ["conv"],
    ["bn", "relu"],
    ["conv", "relu", "bn"],
    ["pool"],
)
_LINEAR_BLOCKS = (["linear", "relu"], ["linear", "bn1d"], ["linear", "bn1d", "relu"], ["linear"], ["dropout"])
_KINDS = ("random", "course_cnn", "mlp", "random_stubs", "lenet5", "course_cnn_stubs")
_SIZES = {"course_cnn": 16, "course_cnn_stubs": 16, "lenet5": 16}  # image side; random nets and MLP: 8


def _pick(g: torch.Generator, options: tuple) -> list[str]:
    return list(options[int(torch.randint(len(options), (1,), generator=g))])


def _random_layout(seed: int) -> dict[str, list]:
    """Named parts → layers; a nested list is a nested ``nn.Sequential``. Runs on 8×8 images."""
    g = torch.Generator().manual_seed(seed)
    convs: list[str] = ["conv", "bn", "relu"] if seed % 3 == 0 else ["conv"]
    for _ in range(2):
        convs += _pick(g, _CONV_BLOCKS)
    convs.append("pool")
    head = ["flatten"] + _pick(g, _LINEAR_BLOCKS) + _pick(g, _LINEAR_BLOCKS) + ["linear"]
    if seed % 2:
        return {"features": convs, "classifier": head}
    return {"stem": ["conv", "relu"], "body": [convs[:3], convs[3:]], "head": ["pool", *head]}


class _Net(nn.Module):
    """Runs its children in order (``quant`` first and ``dequant`` last when it has stubs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for child in self.children():
            x = child(x)
        return x


def _build_random(layout: dict[str, list], stubs: bool, in_channels: int) -> nn.Module:
    from torch.ao.quantization import DeQuantStub, QuantStub

    state = {"c": in_channels, "size": 8, "features": 0, "i": 0}

    def make(kind: str) -> nn.Module:
        state["i"] += 1
        if kind == "conv":
            out = 4 + 2 * (state["i"] % 3)
            m: nn.Module = nn.Conv2d(state["c"], out, 3, padding=1, bias=state["i"] % 2 == 0)
            state["c"] = out
            return m
        if kind == "bn":
            return nn.BatchNorm2d(state["c"])
        if kind == "pool":
            state["size"] //= 2
            return nn.MaxPool2d(2)
        if kind == "flatten":
            state["features"] = state["c"] * state["size"] ** 2
            return nn.Flatten()
        if kind == "linear":
            out = 10 if state["features"] == 0 else 6 + 2 * (state["i"] % 3)
            m = nn.Linear(state["features"], out)
            state["features"] = out
            return m
        if kind == "bn1d":
            return nn.BatchNorm1d(state["features"])
        if kind == "dropout":
            return nn.Dropout(0.5)
        return nn.ReLU()

    def seq(items: list) -> nn.Sequential:
        return nn.Sequential(*[seq(it) if isinstance(it, list) else make(it) for it in items])

    net = _Net()
    if stubs:
        net.quant = QuantStub()
    for name, items in layout.items():
        net.add_module(name, seq(items))
    if stubs:
        net.dequant = DeQuantStub()
    return net


def _fresh(inputs: dict) -> nn.Module:
    """The case's network with PyTorch's default initialisation."""
    from .. import models

    kind, c = inputs["kind"], inputs["in_channels"]
    if kind.startswith("random"):
        model = _build_random(inputs["layout"], kind == "random_stubs", c)
    elif kind.startswith("course_cnn"):
        model = models.CourseCNN((8, 16), 32, c, 16, quant_stubs=kind == "course_cnn_stubs")
    elif kind == "mlp":
        model = models.MLP(hidden=(32, 16), image_size=8, in_channels=c)
    else:
        model = models.LeNet5(c, 16)
    return model


def _build(inputs: dict) -> nn.Module:
    """The fp32 network of a case, with the case's weights and BatchNorm statistics (eval mode)."""
    model = _fresh(inputs)
    model.load_state_dict(inputs["state"])
    return model.eval()


def _groups(inputs: dict) -> list[list[str]]:
    """The fusion groups, listed from the case's description (names before any wrapping)."""
    kind = inputs["kind"]
    if kind.startswith("course_cnn"):
        return [["features.0", "features.1", "features.2"], ["features.4", "features.5", "features.6"]] + [
            ["classifier.1", "classifier.2"]
        ]
    if kind == "mlp":
        return [["net.1", "net.2"], ["net.3", "net.4"]]
    if kind == "lenet5":
        return []  # no Sequential; its one ReLU module is shared by four calls
    names = {"conv": "Conv2d", "bn": "BatchNorm2d", "relu": "ReLU", "linear": "Linear", "bn1d": "BatchNorm1d"}
    patterns = _fuser_patterns()  # what PyTorch's eager fuser knows, longest first
    groups: list[list[str]] = []

    def walk(prefix: str, items: list) -> None:
        kinds = [names.get(it, it) if isinstance(it, str) else "Sequential" for it in items]
        for j, it in enumerate(items):
            if isinstance(it, list):
                walk(f"{prefix}.{j}", it)
        i = 0
        while i < len(kinds):
            for pat in patterns:
                if tuple(kinds[i : i + len(pat)]) == pat:
                    groups.append([f"{prefix}.{k}" for k in range(i, i + len(pat))])
                    i += len(pat)
                    break
            else:
                i += 1

    for part, items in inputs["layout"].items():
        walk(part, items)
    return groups


def _describe(inputs: dict) -> str:
    kind = inputs["kind"]
    what = {
        "course_cnn": "a CourseCNN without stubs (quant/dequant are Identity)",
        "course_cnn_stubs": "a CourseCNN(quant_stubs=True)",
        "mlp": "an MLP (net = Flatten, Linear, ReLU, Linear, ReLU, Linear)",
        "lenet5": "a LeNet5 (no Sequential; one ReLU module called four times)",
    }.get(kind)
    if what is None:
        parts = ", ".join(f"{k}={v}" for k, v in inputs["layout"].items())
        what = f"a network {'with' if kind == 'random_stubs' else 'without'} QuantStub/DeQuantStub: {parts}"
    return f"{what}; backend={inputs['backend']!r}"
