"""Exercise specs for chapter 10 — compressing real CNNs.

10.1 ``coupled_group(model, layer)`` (= Torch-Pruning's ``DependencyGraph`` group; the student's
call runs with Torch-Pruning switched off, so delegating to the oracle scores 0) ·
10.2 ``prune_basic_block(block, keep_mid, keep_out)`` (= Torch-Pruning's pruned block).
10.3 (the latency harness) is in ``ch10_latency.py``.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..exercise import Exercise, assert_same

# --- 10.1 coupled_group ----------------------------------------------------------------------

#: torchvision architectures (random weights: only the structure matters) + the course ResNet.
_MODELS_101 = ("resnet18", "mobilenet_v2", "resnet_mini", "mnasnet0_5")


def build_structure_model(name: str) -> nn.Module:
    """A model by name, random weights, eval mode, 3-channel input (nothing is downloaded)."""
    if name == "resnet_mini":
        from ..models import ResNetMini

        return ResNetMini(in_channels=3).eval()
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval()


def _convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _group_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    name = _MODELS_101[seed % len(_MODELS_101)]
    convs = _convs(build_structure_model(name))
    return {"model": name, "layer": convs[int(torch.randint(len(convs), (), generator=g))]}


#: what 10.1's run returns when the student's code reached for Torch-Pruning (the oracle)
_USES_TP = "used torch_pruning"
_TP_OFF = (
    "Exercise 10.1 asks you to find the group yourself (torch.fx, as in the hint): Torch-Pruning is "
    "the checker's oracle, so torch_pruning (and course_utils.structured, which wraps it) is switched "
    "off while your coupled_group runs."
)


class TorchPruningOff(RuntimeError):
    """Raised when code under :func:`without_torch_pruning` uses Torch-Pruning."""


class _OffModule(types.ModuleType):
    """Stands in for ``torch_pruning`` in ``sys.modules``: any attribute use refuses."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._tripped.append(name)
        raise TorchPruningOff(_TP_OFF)


@contextlib.contextmanager
def without_torch_pruning(tripped: list) -> Iterator[None]:
    """Inside: ``import torch_pruning`` yields a module that refuses every use, and the real
    ``DependencyGraph`` (held by code that imported it before) refuses to build or group.
    Every refusal is appended to ``tripped``; everything is restored on exit."""
    try:
        import torch_pruning as real
    except ImportError:
        real = None
    saved = sys.modules.get("torch_pruning")
    patched = []

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        tripped.append("DependencyGraph")
        raise TorchPruningOff(_TP_OFF)

    if real is not None:
        cls = real.DependencyGraph
        for attr in ("build_dependency", "get_pruning_group", "get_all_groups"):
            patched.append((attr, cls.__dict__[attr]))
            setattr(cls, attr, refuse)
    stub = _OffModule("torch_pruning")
    stub._tripped = tripped
    sys.modules["torch_pruning"] = stub
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("torch_pruning", None)
        else:
            sys.modules["torch_pruning"] = saved
        for attr, original in patched:
            setattr(real.DependencyGraph, attr, original)


def _group_run(fn, inputs: dict) -> Any:
    model = build_structure_model(inputs["model"])
    tripped: list = []
    with without_torch_pruning(tripped):
        try:
            got = fn(model, inputs["layer"])
        except TorchPruningOff:
            got = _USES_TP
    if tripped:  # also when the student caught the refusal and answered otherwise
        return _USES_TP
    if isinstance(got, dict):
        return {str(k): str(v) for k, v in got.items()}
    return got


def _group_reference(inputs: dict) -> dict[str, str]:
    from ..structured import coupled_group

    model = build_structure_model(inputs["model"])
    return coupled_group(model, inputs["layer"], torch.randn(1, 3, 32, 32))


def _group_compare(got: Any, expected: dict, inputs: dict) -> None:
    where = f"{inputs['model']}, pruning the output channels of {inputs['layer']!r}"
    if got == _USES_TP:
        raise AssertionError(f"{where}: your code used torch_pruning. {_TP_OFF}")
    if not isinstance(got, dict):
        raise AssertionError(
            f"{where}: expected a dict {{module name: 'out' | 'in'}}, got {type(got).__name__}."
        )
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    if not (missing or extra or wrong):
        return
    lines = [
        f"{where}: your group differs from Torch-Pruning's DependencyGraph group ({len(expected)} layers)."
    ]
    if missing:
        lines.append("  missing: " + ", ".join(f"{k} ({expected[k]})" for k in missing[:6]))
        lines.append(
            "  hint: follow the channel forward through BN/ReLU/pooling/residual sums to every conv or "
            "Linear that reads it ('in'), and at a sum backward to every producer added into it ('out'); "
            "a depthwise conv passes the channel through (its in and out shrink: 'out')."
        )
    if extra:
        lines.append("  not in the group: " + ", ".join(f"{k} ({got[k]})" for k in extra[:6]))
    if wrong:
        lines.append(
            "  wrong side: "
            + ", ".join(f"{k} is {expected[k]!r}, you said {got[k]!r}" for k in wrong[:6])
            + " ('out': its output channels shrink, BN and depthwise included; 'in': only its inputs)"
        )
    raise AssertionError("\n".join(lines))


def _group_edges() -> list[dict]:
    return [
        {"model": "resnet18", "layer": "conv1"},  # the stem: every residual sum of layer1
        {"model": "resnet18", "layer": "layer4.1.conv2"},  # ends in the classifier's input
        {"model": "mobilenet_v2", "layer": "features.2.conv.1.0"},  # a depthwise conv as the root
        {"model": "resnet_mini", "layer": "layer2.0.downsample.0"},  # the shortcut branch
    ]


# --- 10.2 prune_basic_block --------------------------------------------------------------------


def _make_block(inplanes: int, planes: int, stride: int, state: dict | None = None) -> nn.Module:
    from torchvision.models.resnet import BasicBlock

    down = None
    if stride != 1 or inplanes != planes:
        down = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
        )
    block = BasicBlock(inplanes, planes, stride=stride, downsample=down)
    if state is not None:
        block.load_state_dict(state, strict=False)
    return block.eval()


def _block_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    with_down = seed % 2 == 0
    inplanes = int(torch.randint(3, 9, (), generator=g))
    planes = inplanes + int(torch.randint(2, 7, (), generator=g)) if with_down else inplanes
    stride = 2 if with_down and seed % 4 == 0 else 1
    block = _make_block(inplanes, planes, stride)
    state = {}
    for k, v in block.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("weight") and v.dim() == 1:  # BN gamma
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * (0.5 if v.dim() > 1 else 0.2)
    n_mid = int(torch.randint(1, planes, (), generator=g))
    keep_mid = sorted(torch.randperm(planes, generator=g)[:n_mid].tolist())
    keep_out = None
    if with_down:
        n_out = int(torch.randint(1, planes, (), generator=g))
        keep_out = sorted(torch.randperm(planes, generator=g)[:n_out].tolist())
    return {
        "inplanes": inplanes,
        "planes": planes,
        "stride": stride,
        "state": state,
        "keep_mid": keep_mid,
        "keep_out": keep_out,
        "x": torch.randn(2, inplanes, 8, 8, generator=g),
    }


def _plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone() for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")
    }


def _block_run(fn, inputs: dict) -> Any:
    block = _make_block(inputs["inplanes"], inputs["planes"], inputs["stride"], inputs["state"])
    before = _plain_state(block)
    keep_out = None if inputs["keep_out"] is None else list(inputs["keep_out"])
    if inputs.get("expect_error"):
        try:
            fn(block, list(inputs["keep_mid"]), keep_out)
        except ValueError:
            return "ValueError"
        except NotImplementedError:
            raise
        except Exception as err:
            return f"raised {type(err).__name__}, not ValueError"
        return "no error"
    new = fn(block, list(inputs["keep_mid"]), keep_out)
    unchanged = all(torch.equal(before[k], v) for k, v in _plain_state(block).items()) and set(
        _plain_state(block)
    ) == set(before)
    if not isinstance(new, nn.Module):
        return {"returned": type(new).__name__}
    new.eval()
    try:
        with torch.no_grad():
            out: Any = new(inputs["x"].clone())
    except Exception as err:  # reported as a value; the state comparison says which tensor is off
        out = f"{type(err).__name__}: {err}"[:300]
    return {"state": _plain_state(new), "output": out, "original_unchanged": bool(unchanged)}


def _block_reference(inputs: dict) -> Any:
    if inputs.get("expect_error"):
        return "ValueError"
    import torch_pruning as tp

    block = _make_block(inputs["inplanes"], inputs["planes"], inputs["stride"], inputs["state"])
    dg = tp.DependencyGraph().build_dependency(block, example_inputs=inputs["x"][:1])
    planes = inputs["planes"]
    drop_mid = [i for i in range(planes) if i not in set(inputs["keep_mid"])]
    if drop_mid:
        dg.get_pruning_group(block.conv1, tp.prune_conv_out_channels, idxs=drop_mid).prune()
    if inputs["keep_out"] is not None:
        drop_out = [i for i in range(planes) if i not in set(inputs["keep_out"])]
        if drop_out:
            dg.get_pruning_group(block.conv2, tp.prune_conv_out_channels, idxs=drop_out).prune()
    with torch.no_grad():
        out = block(inputs["x"].clone())
    return {"state": _plain_state(block), "output": out, "original_unchanged": True}


def _block_compare(got: Any, expected: Any, inputs: dict) -> None:
    if isinstance(expected, str):
        if got != expected:
            raise AssertionError(
                f"An identity block (no downsample) with keep_out={inputs['keep_out']}: expected a ValueError "
                f"(its output channels are added to its input, so they belong to the previous block), "
                f"got {got!r}."
            )
        return
    if not isinstance(got, dict) or "state" not in got:
        raise AssertionError(f"Return the pruned block (an nn.Module); got {got!r}.")
    if not got["original_unchanged"]:
        raise AssertionError(
            "The block passed in was modified: build and return a new block (copy.deepcopy)."
        )
    gs, es = got["state"], expected["state"]
    if set(gs) != set(es):
        raise AssertionError(
            f"state_dict keys {sorted(set(gs) ^ set(es))} differ from torchvision's BasicBlock: keep the "
            "same submodules (conv1, bn1, conv2, bn2, downsample.0/1)."
        )
    for k in es:
        if gs[k].shape != es[k].shape:
            raise AssertionError(
                f"{k}: shape {tuple(gs[k].shape)} but Torch-Pruning's has {tuple(es[k].shape)} "
                f"(keep_mid={inputs['keep_mid']}, keep_out={inputs['keep_out']}). BN running_mean/var "
                "shrink with its weight; conv2's input = conv1's output; the downsample's output = conv2's."
            )
        assert_same(gs[k], es[k], inputs, path=f"state[{k!r}]", rtol=1e-5, atol=1e-6)
    assert_same(got["output"], expected["output"], inputs, path="output on x", rtol=1e-4, atol=1e-5)


def _block_edges() -> list[dict]:
    keep_all = _block_case(2)
    keep_all["keep_mid"] = list(range(keep_all["planes"]))  # keep everything: the same block
    one = _block_case(4)
    one["keep_mid"], one["keep_out"] = [one["planes"] - 1], [0]  # a single channel each
    identity = _block_case(1)
    identity["keep_out"] = [0]
    identity["expect_error"] = True
    return [keep_all, one, identity]


EXERCISES = [
    Exercise(
        id="10.1",
        title="The coupled-channel group of a layer",
        target="coupled_group",
        points=3,
        make_case=_group_case,
        run=_group_run,
        reference=_group_reference,
        compare=_group_compare,
        edge_cases=_group_edges,
        hint="torch.fx.symbolic_trace(model).graph: walk node.users forward and node.all_input_nodes backward.",
        timeout=120.0,
    ),
    Exercise(
        id="10.2",
        title="Prune a residual BasicBlock by hand",
        target="prune_basic_block",
        points=3,
        make_case=_block_case,
        run=_block_run,
        reference=_block_reference,
        compare=_block_compare,
        edge_cases=_block_edges,
        hint="Slice weight[keep] (out) or weight[:, keep] (in); BN: weight, bias, running_mean, running_var.",
    ),
]

__all__ = ["EXERCISES", "TorchPruningOff", "build_structure_model", "without_torch_pruning"]
