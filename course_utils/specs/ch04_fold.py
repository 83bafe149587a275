"""Exercise spec for chapter 4 — 4.1 ``fold_bn_into_next(bn, layer)``: a BatchNorm *before* a
Linear / Conv2d folded into that layer, compared with ``layer(bn(x))`` computed by PyTorch in eval
mode (and the weights with the formula); padded or grouped convs must be refused."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exercise import Exercise, assert_same
from .common import _safe
from .together import paired_compare, paired_reference, paired_run, with_regular

# --- 4.1 fold_bn_into_next(bn, layer) ----------------------------------------------------------


def _fold_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    kind = "linear" if seed % 2 else "conv"
    c = 3 + seed % 4  # BN features = the layer's input channels
    o = c if seed % 4 == 0 else 2 + seed % 3  # o == c (seeds 0, 4, …): a dim-0 mistake broadcasts silently
    k = 1 if seed % 3 == 0 else 3
    shape = (o, c) if kind == "linear" else (o, c, k, k)
    return {
        "kind": kind,
        "c": c,
        "o": o,
        "k": k,
        "stride": 1 + (seed // 2) % 2,
        "padding": 0,
        "groups": 1,
        "bias": seed % 3 != 1,
        "affine": True,
        "eps": [1e-5, 1e-3, 0.1][seed % 3],
        "weight": torch.randn(shape, generator=g),
        "layer_bias": torch.randn(o, generator=g),
        # γ of both signs: a negative scale flips an input channel, and the fold must follow it
        "gamma": (torch.rand(c, generator=g) * 2 + 0.1)
        * torch.where(torch.rand(c, generator=g) < 0.2, -1.0, 1.0),
        "beta": torch.randn(c, generator=g),
        "mean": torch.randn(c, generator=g) * 2,
        "var": torch.rand(c, generator=g) * 3 + 0.01,
        "x": torch.randn((5, c) if kind == "linear" else (2, c, 8, 8), generator=g),
    }


def _fold_edge_cases() -> list[dict]:
    no_affine = _fold_case(4)
    no_affine["affine"] = False  # BatchNorm2d(affine=False): γ = 1, β = 0
    tiny_var = _fold_case(7)
    tiny_var.update(var=torch.full_like(tiny_var["var"], 1e-8), eps=1e-2)  # σ = sqrt(var + eps)
    padded = _fold_case(2)
    padded["padding"] = 1  # zero padding is not BN-transformed: the fold would be wrong at the border
    grouped = _fold_case(8)
    grouped.update(groups=2, c=4, o=4)
    grouped["weight"] = torch.randn(4, 2, grouped["k"], grouped["k"])
    for key, scale in (("gamma", 1.0), ("beta", 1.0), ("mean", 2.0)):
        grouped[key] = torch.randn(4) * scale
    grouped["var"] = torch.rand(4) + 0.5
    grouped["layer_bias"] = torch.randn(4)
    grouped["x"] = torch.randn(2, 4, 8, 8)
    square = _fold_case(3)  # as many outputs as inputs: scaling dim 0 instead of dim 1 runs silently
    square.update(
        o=square["c"], weight=torch.randn(square["c"], square["c"]), layer_bias=torch.randn(square["c"])
    )
    return [
        no_affine,
        tiny_var,
        square,
        with_regular(padded, _fold_case(10)),
        with_regular(grouped, _fold_case(12)),
    ]


def _fold_modules(inputs: dict) -> tuple[nn.Module, nn.Module]:
    c, o = inputs["c"], inputs["o"]
    if inputs["kind"] == "linear":
        bn: nn.Module = nn.BatchNorm1d(c, eps=inputs["eps"], affine=inputs["affine"])
        layer: nn.Module = nn.Linear(c, o, bias=inputs["bias"])
    else:
        bn = nn.BatchNorm2d(c, eps=inputs["eps"], affine=inputs["affine"])
        layer = nn.Conv2d(
            c,
            o,
            inputs["k"],
            stride=inputs["stride"],
            padding=inputs["padding"],
            groups=inputs["groups"],
            bias=inputs["bias"],
        )
    with torch.no_grad():
        layer.weight.copy_(inputs["weight"])
        if layer.bias is not None:
            layer.bias.copy_(inputs["layer_bias"])
        if bn.affine:
            bn.weight.copy_(inputs["gamma"])
            bn.bias.copy_(inputs["beta"])
        bn.running_mean.copy_(inputs["mean"])
        bn.running_var.copy_(inputs["var"])
    return bn.eval(), layer.eval()


def _must_raise(inputs: dict) -> bool:
    return inputs["kind"] == "conv" and (inputs["padding"] != 0 or inputs["groups"] != 1)


def _layer_summary(folded: Any, x: torch.Tensor) -> dict:
    if not isinstance(folded, (nn.Conv2d, nn.Linear)):
        return {"type": type(folded).__name__}
    out = {
        "type": type(folded).__name__,
        "weight": folded.weight.detach().clone(),
        "bias": None if folded.bias is None else folded.bias.detach().clone(),
        "output": folded.eval()(x).detach(),
    }
    if isinstance(folded, nn.Conv2d):
        out["kernel/stride/padding/groups"] = [
            list(folded.kernel_size),
            list(folded.stride),
            list(folded.padding),
            folded.groups,
        ]
    return out


def _fold_run(fn, inputs: dict) -> dict:
    bn, layer = _fold_modules(inputs)
    before = [t.detach().clone() for t in (*bn.state_dict().values(), *layer.state_dict().values())]
    if _must_raise(inputs):
        result = _safe(fn, bn, layer)
        raised = isinstance(result, str) and result.startswith("ValueError")
        return {
            "raised": "ValueError"
            if raised
            else (result if isinstance(result, str) else "no exception (a layer came back)")
        }
    folded = fn(bn, layer)
    after = [t.detach().clone() for t in (*bn.state_dict().values(), *layer.state_dict().values())]
    out = _layer_summary(folded, inputs["x"])
    out["bn and layer unchanged"] = all(torch.equal(a, b) for a, b in zip(before, after))
    out["returned a new module"] = folded is not layer
    return out


def _fold_reference(inputs: dict) -> dict:
    """The formula for the weights; PyTorch itself, ``layer(bn(x))`` in eval mode, for the output."""
    bn, layer = _fold_modules(inputs)
    if _must_raise(inputs):
        return {"raised": "ValueError"}
    with torch.no_grad():
        sigma = torch.sqrt(bn.running_var + bn.eps)
        a = (bn.weight if bn.affine else torch.ones_like(sigma)) / sigma
        d = (bn.bias if bn.affine else torch.zeros_like(sigma)) - bn.running_mean * a
        shape = (1, -1) + (1,) * (layer.weight.dim() - 2)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
        out = {
            "type": type(layer).__name__,
            "weight": layer.weight * a.reshape(shape),
            "bias": bias + (layer.weight * d.reshape(shape)).sum(tuple(range(1, layer.weight.dim()))),
            "output": layer(bn(inputs["x"])),
        }
    if isinstance(layer, nn.Conv2d):
        out["kernel/stride/padding/groups"] = [
            list(layer.kernel_size),
            list(layer.stride),
            list(layer.padding),
            1,
        ]
    out["bn and layer unchanged"] = True
    out["returned a new module"] = True
    return out


def _fold_compare(got: Any, expected: dict, inputs: dict) -> None:
    if "raised" in expected:
        if not isinstance(got, dict) or got.get("raised") != "ValueError":
            what = "padding=1" if inputs["padding"] else f"groups={inputs['groups']}"
            raise AssertionError(
                f"a Conv2d with {what} must raise ValueError, got {got.get('raised') if isinstance(got, dict) else got!r}: "
                "zero padding adds zeros *after* BN (they are not BN-transformed), so no fold is exact "
                "at the border; a grouped conv mixes only some channels (this exercise refuses it)."
            )
        return
    kind = expected["type"]
    if not isinstance(got, dict) or got.get("type") != kind:
        seen = got.get("type") if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"fold_bn_into_next must return an nn.{kind} (the layer's type), got {seen}.")
    if not got["bn and layer unchanged"]:
        raise AssertionError(
            "your function changed the bn or layer it was given; build a new layer "
            "(copy.deepcopy(layer) is a good start)."
        )
    if not got["returned a new module"]:
        raise AssertionError(f"return a new {kind}, not the layer you were given.")
    if got["bias"] is None:
        raise AssertionError(
            f"the folded layer has no bias (the layer had bias={inputs['bias']}); folding always "
            "creates one: b' = b + Σ W·d, with b = 0 when the layer had none."
        )
    if (
        "kernel/stride/padding/groups" in expected
        and got["kernel/stride/padding/groups"] != expected["kernel/stride/padding/groups"]
    ):
        raise AssertionError(
            f"kernel/stride/padding/groups {got['kernel/stride/padding/groups']} but the conv had "
            f"{expected['kernel/stride/padding/groups']}: keep the layer's hyper-parameters."
        )
    w = got["weight"]
    if isinstance(w, torch.Tensor) and w.shape == expected["weight"].shape:
        bn, layer = _fold_modules(inputs)
        sigma = torch.sqrt(bn.running_var + bn.eps)
        a = (bn.weight.detach() if bn.affine else torch.ones_like(sigma)) / sigma
        rows = (
            layer.weight.detach() * a.reshape((-1,) + (1,) * (w.dim() - 1))[: w.shape[0]]
            if w.shape[0] == a.numel()
            else None
        )
        if (
            rows is not None
            and torch.allclose(w, rows, rtol=1e-5, atol=1e-5)
            and not torch.allclose(w, expected["weight"], rtol=1e-5, atol=1e-5)
        ):
            raise AssertionError(
                "you scaled the layer's *output* channels (dim 0), as when BN comes after a conv. Here BN "
                "comes before: it scales the layer's *inputs*, so W'[:, c] = W[:, c]·γ_c/σ_c (dim 1)."
            )
    try:
        assert_same(got["weight"], expected["weight"], inputs, path="weight", rtol=1e-5, atol=1e-5)
    except AssertionError as err:
        raise AssertionError(
            f"{err}\nW'[:, c] = W[:, c] · γ_c/σ_c over the input channels c, σ = sqrt(running_var + eps); "
            f"γ = 1, β = 0 when the BN has no affine parameters (affine={inputs['affine']}, eps={inputs['eps']})."
        ) from None
    try:
        assert_same(got["bias"], expected["bias"], inputs, path="bias", rtol=1e-4, atol=1e-4)
    except AssertionError as err:
        raise AssertionError(
            f"{err}\nb'_o = b_o + Σ_c,(k) W[o, c, (k)]·d_c with d = β − μ·γ/σ: BN's shift passes through the "
            "layer's weights (summed over inputs and kernel taps), it is not simply added."
        ) from None
    assert_same(
        got["output"], expected["output"], inputs, path="output (vs layer(bn(x)))", rtol=1e-4, atol=1e-4
    )


EXERCISES = [
    Exercise(
        id="4.1",
        title="fold_bn_into_next(bn, layer)",
        target="fold_bn_into_next",
        points=2,
        make_case=_fold_case,
        run=paired_run(_fold_run),
        reference=paired_reference(_fold_reference),
        compare=paired_compare(_fold_compare),
        edge_cases=_fold_edge_cases,
        hint="a = γ/σ and d = β − μ·a per BN channel (σ = sqrt(running_var + eps); γ = 1, β = 0 without "
        "affine). The BN feeds the layer's *inputs*: W' = W · a along dim 1 (reshape a to [1, C] or "
        "[1, C, 1, 1]); b' = b + (W · d along dim 1) summed over every dim but 0. Raise ValueError for a "
        "Conv2d with padding or groups.",
    ),
]
