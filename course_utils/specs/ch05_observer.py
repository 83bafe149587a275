"""Exercise spec for chapter 5 — 5.5 ``MyMinMaxObserver`` reproduces ``MinMaxObserver`` alone
(ranges over several batches, qparams for each dtype and scheme) and inside a ``QConfig``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exercise import Exercise, assert_same
from .ch05 import _DTYPES, _SCHEMES, _quietly
from .common import _safe

# --- 5.5 MyMinMaxObserver -----------------------------------------------------------------------------


def _obs_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    # the widest batch first, so that an observer remembering only the last batch is caught
    batches = [torch.randn(4, 1, 6, 6, generator=g) * (3 - i) + 0.3 * seed for i in range(3)]
    return {
        "batches": batches,
        "dtype": _DTYPES[seed % 2],
        "qscheme": _SCHEMES[(seed // 2) % 2],
        # MinMaxObserver refuses reduce_range for symmetric quint8
        "reduce_range": seed % 3 == 2 and not (seed % 2 == 0 and (seed // 2) % 2 == 1),
        "model_seed": seed,
        "x_test": torch.randn(2, 1, 6, 6, generator=g),
    }


def _obs_edge_cases() -> list[dict]:
    zeros = _obs_case(10)
    zeros["batches"] = [torch.zeros(4, 1, 6, 6)] * 2
    negative = _obs_case(11)
    negative["batches"] = [-(b.abs() + 0.1) for b in negative["batches"]]
    return [zeros, negative]


def _tiny_model(seed: int) -> nn.Module:
    from torch.ao.quantization import DeQuantStub, QuantStub

    torch.manual_seed(seed)
    return nn.Sequential(
        QuantStub(),
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
        DeQuantStub(),
    ).eval()


def _obs_recipe(cls: Any, inputs: dict) -> dict:
    import torch.ao.quantization as tq

    out: dict[str, Any] = {}
    obs = cls(dtype=inputs["dtype"], qscheme=inputs["qscheme"], reduce_range=inputs["reduce_range"])
    buffers = dict(obs.named_buffers()) if isinstance(obs, nn.Module) else {}
    out["min_val and max_val are buffers"] = "min_val" in buffers and "max_val" in buffers
    out["min_val, max_val before any forward"] = [float(obs.min_val), float(obs.max_val)]
    out["is_dynamic"] = getattr(obs, "is_dynamic", None)
    for b in inputs["batches"]:
        y = obs(b)
        if not (isinstance(y, torch.Tensor) and torch.equal(y, b)):
            out["forward returns its input"] = False
    out.setdefault("forward returns its input", True)
    out["min_val"] = float(obs.min_val)
    out["max_val"] = float(obs.max_val)
    scale, zp = obs.calculate_qparams()
    out["scale is a float32 tensor of shape [1]"] = (
        isinstance(scale, torch.Tensor) and scale.dtype == torch.float32 and list(scale.shape) == [1]
    )
    out["zero_point is an integer tensor of shape [1]"] = (
        isinstance(zp, torch.Tensor)
        and not zp.is_floating_point()
        and zp.dtype != torch.bool
        and list(zp.shape) == [1]
    )
    out["scale"] = float(torch.as_tensor(scale).flatten()[0])
    out["zero_point"] = int(torch.as_tensor(zp).flatten()[0])

    # inside a QConfig: prepare → calibrate → convert a tiny model (activations are quint8 affine)
    model = _tiny_model(inputs["model_seed"])
    if not hasattr(cls, "with_args"):
        out["in a QConfig"] = "no with_args: subclass torch.ao.quantization.ObserverBase"
        return out
    model.qconfig = tq.QConfig(
        activation=cls.with_args(dtype=torch.quint8, reduce_range=inputs["reduce_range"]),
        weight=tq.default_per_channel_weight_observer,
    )
    prepared = _quietly(tq.prepare, model)
    for b in inputs["batches"]:
        prepared(b)
    converted = _safe(lambda: _quietly(tq.convert, prepared))
    if isinstance(converted, str):
        out["in a QConfig"] = converted
        return out
    out["in a QConfig"] = {
        "activation scales": [float(converted[i].scale) for i in (0, 1, 4)],
        "activation zero points": [int(converted[i].zero_point) for i in (0, 1, 4)],
        "output": converted(inputs["x_test"]).detach(),
    }
    return out


def _obs_run(cls, inputs: dict) -> dict:
    return _obs_recipe(cls, inputs)


def _obs_reference(inputs: dict) -> dict:
    return _quietly(_obs_recipe, torch.ao.quantization.MinMaxObserver, inputs)


def _obs_compare(got: Any, expected: dict, inputs: dict) -> None:
    setting = f"({inputs['dtype']}, {inputs['qscheme']}, reduce_range={inputs['reduce_range']})"
    if not got.get("forward returns its input", False):
        raise AssertionError("forward(x) must return x unchanged: an observer only watches.")
    for key in ("min_val", "max_val"):
        if abs(got[key] - expected[key]) > 1e-6 * max(1.0, abs(expected[key])):
            raise AssertionError(
                f"after {len(inputs['batches'])} batches {key} = {got[key]:.6g} but MinMaxObserver has "
                f"{expected[key]:.6g}: keep the running {key[:3]} over *all* batches seen."
            )
    try:
        assert_same(
            {"scale": got["scale"], "zero_point": got["zero_point"]},
            {"scale": expected["scale"], "zero_point": expected["zero_point"]},
            inputs,
            path=f"calculate_qparams() {setting}",
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n  (your calc_qparams from 5.1 computes exactly this)") from None
    if isinstance(got["in a QConfig"], str) and got["in a QConfig"].startswith("no with_args"):
        raise AssertionError(f"inside a QConfig, prepare/convert failed: {got['in a QConfig']}")
    stated = {  # what the exercise text requires, beyond MinMaxObserver's numbers
        "min_val and max_val are buffers": "keep the running min and max in buffers min_val, max_val "
        "(self.register_buffer), so they are saved in the state_dict",
        "min_val, max_val before any forward": "min_val starts at +inf and max_val at -inf",
        "is_dynamic": "call super().__init__(dtype=dtype, is_dynamic=False)",
        "scale is a float32 tensor of shape [1]": "calculate_qparams() returns scale as a float32 "
        "tensor of shape [1]",
        "zero_point is an integer tensor of shape [1]": "calculate_qparams() returns zero_point as an "
        "integer tensor of shape [1]",
    }
    for key, rule in stated.items():
        if got.get(key) != expected[key]:
            raise AssertionError(f"{rule} (got {key} = {got.get(key)!r}, expected {expected[key]!r}).")
    if isinstance(got["in a QConfig"], str):
        raise AssertionError(f"inside a QConfig, prepare/convert failed: {got['in a QConfig']}")
    assert_same(got["in a QConfig"], expected["in a QConfig"], inputs, path="converted model")


EXERCISES = [
    Exercise(
        id="5.5",
        title="MyMinMaxObserver",
        target="MyMinMaxObserver",
        points=3,
        make_case=_obs_case,
        run=_obs_run,
        reference=_obs_reference,
        compare=_obs_compare,
        edge_cases=_obs_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hint="subclass torch.ao.quantization.ObserverBase; keep min_val/max_val buffers updated in "
        "forward (return x); calculate_qparams() returns (scale, zero_point) tensors of shape [1].",
    ),
]
