"""Exercise specs for chapter 1 — pruning theory."""

from __future__ import annotations

import torch
from torch import nn

from ..exercise import Exercise

# --- 1.1 sparsity(model) ---------------------------------------------------------------


def _sparsity_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 4), (8,), (3, 8, 3, 3)]
    tensors = []
    for s in shapes:
        t = torch.randn(s, generator=g)
        t[torch.rand(s, generator=g) < 0.3 + 0.1 * (seed % 5)] = 0.0
        tensors.append(t)
    return {"tensors": tensors}


def _sparsity_model(tensors: list[torch.Tensor]) -> nn.Module:
    m = nn.Module()
    for i, t in enumerate(tensors):
        m.register_parameter(f"p{i}", nn.Parameter(t.clone()))
    m.register_buffer("running", torch.zeros(5))  # buffers are not parameters: not counted
    return m


def _sparsity_run(fn, inputs: dict) -> float:
    return float(fn(_sparsity_model(inputs["tensors"])))


def _sparsity_reference(inputs: dict) -> float:
    ts = inputs["tensors"]
    return sum(int((t == 0).sum()) for t in ts) / sum(t.numel() for t in ts)


EXERCISES = [
    Exercise(
        id="1.1",
        title="sparsity(model)",
        target="sparsity",
        points=1,
        make_case=_sparsity_case,
        run=_sparsity_run,
        reference=_sparsity_reference,
        hint="count zeros over model.parameters() only (not buffers), divide by the total count.",
    ),
]
