"""Exercise spec for chapter 5 — static PTQ of a network the lesson never showed (5.6).

``quantize_static(model, calib_loader, backend=None)`` must turn *any* eval-able network made
of ``nn.Sequential`` parts (Conv2d / BatchNorm / ReLU / Linear / Flatten / MaxPool / Dropout)
into an int8 copy: find and fuse every Conv-BN-ReLU, Conv-BN, Conv-ReLU, BN-ReLU, Linear-ReLU
and Linear-BN1d run itself (the generic ``COURSE_CNN_FUSION_GROUPS``), quantize the input even
when the model has no ``QuantStub`` (``QuantWrapper``), use the engine ``use_engine(backend)``
sets and its default qconfig, calibrate on every batch, convert, and leave the model untouched.

The oracle is PyTorch's eager workflow on the same model with the groups listed from the
network's own description (what is fusable: PyTorch's fuser table); the networks, their
builders and groups are in ``sequential_nets.py``. Networks: random
Sequential nets (BN in various places, convs without BN, nested Sequentials, with or without
stubs), a plain ``CourseCNN`` (no stubs), ``CourseCNN(quant_stubs=True)``, ``MLP`` and
``LeNet5`` (nothing to fuse: its one ReLU module is shared), all with random weights and
BatchNorm statistics; one case in four asks for the ``qnnpack`` engine.

Identical recipes give identical int8 outputs; the comparison allows one output quantization
step per entry (a BN fold computed in another float order can move a weight to the next level).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn

from ..exercise import Exercise
from .ch01 import _safe
from .ch05 import _quietly
from .sequential_nets import _KINDS, _SIZES, _build, _describe, _fresh, _groups, _random_layout


def _ptq_case(seed: int) -> dict:
    kind = _KINDS[seed % len(_KINDS)]
    in_channels = 1 if kind in ("course_cnn_stubs", "lenet5") or seed % 2 == 0 else 3
    inputs: dict[str, Any] = {
        "kind": kind,
        "in_channels": in_channels,
        "layout": _random_layout(seed) if kind.startswith("random") else {},
        "backend": _if_supported("qnnpack") if seed % 4 == 3 else None,
        "batch_size": 16,
    }
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _fresh(inputs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # He-scaled weights (the signal neither dies nor explodes through the
        # layers, so the output depends on the input) and non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    inputs["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    side = _SIZES.get(kind, 8)
    # four calibration batches of different ranges, the widest neither first nor last, so that
    # calibrating on one batch gives other activation ranges than calibrating on all of them
    others = torch.tensor([0.6, 1.2, 1.0])[torch.randperm(3, generator=g)].tolist()
    spread = others[: 1 + seed % 2] + [4.0] + others[1 + seed % 2 :]
    batches = [torch.randn(16, in_channels, side, side, generator=g) * s + 0.2 * s for s in spread]
    inputs["calib"] = torch.cat(batches)
    inputs["x"] = torch.randn(8, in_channels, side, side, generator=g) * 2.0
    return inputs


# --- run (in the student's kernel), reference, compare ---------------------------------------------


def _loader(inputs: dict) -> torch.utils.data.DataLoader:
    calib = inputs["calib"]
    ds = torch.utils.data.TensorDataset(calib, torch.zeros(len(calib), dtype=torch.long))
    return torch.utils.data.DataLoader(ds, batch_size=inputs["batch_size"])


def _label(m: nn.Module) -> str:
    kind = type(m).__module__
    quantized = kind.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
    return f"int8 {type(m).__name__}" if quantized else f"float {type(m).__name__}"


def _summary(model: Any, inputs: dict) -> dict:
    """What the returned model is made of, and its output on the case's fixed input."""
    if not isinstance(model, nn.Module):
        return {"returned": f"{type(model).__name__} {model!r}"[:200]}
    float_types = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    # layers: leaves, and int8 Linear modules (whose only child holds the packed weights)
    layers = [
        m
        for _, m in model.named_modules()
        if (not list(m.children()) or _label(m).startswith("int8"))
        and type(m).__name__ != "LinearPackedParams"
        and type(m) not in (nn.Identity, nn.Dropout)
    ]
    out: dict[str, Any] = {
        "float layers left": [
            n
            for n, m in model.named_modules()
            if type(m) in float_types or type(m).__module__.startswith("torch.ao.nn.intrinsic.modules")
        ],
        "layers": dict(sorted(Counter(_label(m) for m in layers).items())),
    }
    steps: list[float] = []

    def record(_mod: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].is_quantized:
            steps.append(float(args[0].q_scale()))

    hooks = [m.register_forward_pre_hook(record) for _, m in leaves if type(m).__name__ == "DeQuantize"]
    with torch.no_grad():
        y = _safe(model, inputs["x"].clone())
    for h in hooks:
        h.remove()
    if isinstance(y, str):
        y = y.split(" This could be because")[0]
    if isinstance(y, torch.Tensor) and y.is_quantized:
        y = "a quantized tensor (no DeQuantStub at the end)"
    out["output"] = y.detach() if isinstance(y, torch.Tensor) else str(y)
    out["output step"] = steps[-1] if steps else None
    return out


def _quantize_and_summarize(fn: Any, inputs: dict) -> dict:
    """``fn(model, loader[, backend])`` on the case's network: summary, engine, model unchanged."""
    model = _build(inputs)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    types = [(n, type(m).__name__) for n, m in model.named_modules()]
    # a local import: torch.backends.quantized is a module-like object cloudpickle cannot pickle
    # by value, and run travels by value to the grading kernel
    from torch.backends import quantized as engines

    from ..quantization import select_engine

    before = engines.engine
    backend = inputs["backend"]
    # start from another engine than the one asked for (if this build has one), so that not
    # setting it shows
    want = backend or select_engine()
    decoys = [e for e in engines.supported_engines if e not in (want, "none")]
    if decoys:
        engines.engine = decoys[0]
    try:
        args = (model, _loader(inputs)) if backend is None else (model, _loader(inputs), backend)
        try:
            result = fn(*args)
        except NotImplementedError:
            raise  # the blank exercise: check() says "not implemented yet"
        except Exception as err:  # reported as a value the comparison explains
            result = f"{type(err).__name__}: {err}"[:300]
        engine = engines.engine
        out = {"raised": result} if isinstance(result, str) else _summary(result, inputs)
    finally:
        engines.engine = before
    out["engine"] = engine
    after = model.state_dict()
    out["the model you were given is unchanged"] = (
        [(n, type(m).__name__) for n, m in model.named_modules()] == types
        and set(after) == set(state)
        and all(torch.equal(after[k], v) for k, v in state.items())
    )
    return out


def _ptq_run(fn, inputs: dict) -> dict:
    return _quantize_and_summarize(fn, inputs)


def _recipe(groups: list[list[str]], calib_batches: int | None = None, qconfig_engine: str | None = None):
    """The eager static-PTQ recipe with hand-listed groups (``calib_batches``/``qconfig_engine``
    reproduce two wrong recipes, so that a mismatch can say which one it looks like)."""
    import copy

    import torch.ao.quantization as tq

    from ..quantization import has_quant_stubs, use_engine

    def quantize(model: nn.Module, loader: Any, backend: str | None = None) -> nn.Module:
        engine = use_engine(backend)
        m = copy.deepcopy(model).eval()
        prefix = ""
        if not has_quant_stubs(m):
            m, prefix = tq.QuantWrapper(m).eval(), "module."
        if groups:
            tq.fuse_modules(m, [[prefix + n for n in gr] for gr in groups], inplace=True)
        m.qconfig = tq.get_default_qconfig(qconfig_engine or engine)
        tq.prepare(m, inplace=True)
        with torch.no_grad():
            for i, (x, _) in enumerate(loader):
                if calib_batches is not None and i >= calib_batches:
                    break
                m(x)
        return tq.convert(m, inplace=True)

    return quantize


def _ptq_reference(inputs: dict) -> dict:
    groups = _groups(inputs)
    out = _quietly(_quantize_and_summarize, _recipe(groups), inputs)
    wrong = {"calibrated on the first batch only": _recipe(groups, calib_batches=1)}
    if inputs["backend"] not in (None, "x86"):
        wrong["quantized with the x86 default qconfig on another engine"] = _recipe(
            groups, qconfig_engine="x86"
        )
    out["wrong recipes"] = {
        k: _quietly(_quantize_and_summarize, f, inputs)["output"] for k, f in wrong.items()
    }
    return out


def _within_one_step(got: torch.Tensor, expected: torch.Tensor, step: float) -> bool:
    return got.shape == expected.shape and bool(((got - expected).abs() <= step * 1.001 + 1e-6).all())


def _layers_advice(got: dict[str, int], expected: dict[str, int]) -> str:
    extra = {k: got.get(k, 0) - v for k, v in expected.items() if got.get(k, 0) < v}
    more = {k: v - expected.get(k, 0) for k, v in got.items() if v > expected.get(k, 0)}
    tips = []
    if any("BatchNorm" in k for k in more):
        tips.append(
            "a BatchNorm was left as its own layer: fuse Conv2d-BatchNorm2d (with its ReLU when one "
            "follows), Linear-BatchNorm1d and BatchNorm2d-ReLU too, not only Conv-BN-ReLU triples"
        )
    if more.get("float ReLU", 0) > 0:
        tips.append(
            "a ReLU right after a Conv2d, BatchNorm2d or Linear was not fused into it (Conv-ReLU, "
            "Conv-BN-ReLU, BN-ReLU, Linear-ReLU): every such run in every nn.Sequential, nested ones too"
        )
    if more.get("int8 Quantize", 0) > 0:
        tips.append("the model already had a QuantStub: wrap only a model without stubs")
    if extra.get("int8 Quantize", 0) < 0:
        tips.append("the input is never quantized: wrap a model without QuantStub in tq.QuantWrapper")
    return (
        f"\n  Your model has {more or 'nothing more'} and lacks {dict((k, -v) for k, v in extra.items()) or 'nothing'}"
        " compared with the reference." + "".join(f"\n  Hint: {t}." for t in tips)
    )


def _ptq_compare(got: Any, expected: dict, inputs: dict) -> None:
    where = f"\n  (network: {_describe(inputs)})"
    if "raised" in got:
        tip = ""
        if "has no attribute" in got["raised"] or "not found" in got["raised"].lower():
            tip = (
                "\n  Hint: find the fusion groups in *this* network (walk every nn.Sequential in "
                "named_modules()); CourseCNN's names do not exist here."
            )
        raise AssertionError(f"quantize_static raised {got['raised']}{tip}{where}")
    if not got["the model you were given is unchanged"]:
        raise AssertionError(
            "the model you were given was changed (its modules or weights): the exercise says not to. "
            f"Quantize a copy: m = copy.deepcopy(model).eval(), then wrap/fuse/prepare/convert m.{where}"
        )
    if "returned" in got:
        raise AssertionError(f"return the quantized model (an nn.Module), not {got['returned']}.{where}")
    if got["engine"] != expected["engine"]:
        raise AssertionError(
            f"after your function the quantized engine is {got['engine']!r}, but backend={inputs['backend']!r} "
            f"asks for {expected['engine']!r}: call quantization.use_engine(backend) (None: the engine it "
            f"picks for this machine) and take that engine's default qconfig.{where}"
        )
    if got["float layers left"]:
        raise AssertionError(
            f"these layers are still float: {got['float layers left']}. Set model.qconfig on the model "
            f"you prepare (the root) and convert after calibrating.{where}"
        )
    if isinstance(got["output"], str):
        tip = ""
        if got["layers"].get("int8 Quantize", 0) > expected["layers"].get("int8 Quantize", 0):
            tip = "\n  Hint: this model already has QuantStub/DeQuantStub; wrapping it quantizes twice."
        elif "quantized::" in got["output"] or "QuantizedCPU" in got["output"]:
            tip = (
                "\n  Hint: a quantized layer got a float tensor: nothing quantizes the input of a model "
                "without QuantStub. Wrap it: tq.QuantWrapper(model)."
            )
        raise AssertionError(f"the int8 model fails on a test batch: {got['output']}{tip}{where}")
    if got["layers"] != expected["layers"]:
        raise AssertionError(
            f"the int8 model is not made of the layers full fusion gives: you have {got['layers']}, "
            f"the reference has {expected['layers']}.{_layers_advice(got['layers'], expected['layers'])}{where}"
        )
    step, y, ref = expected["output step"], got["output"], expected["output"]
    if _within_one_step(y, ref, step):
        return
    for name, wrong in expected["wrong recipes"].items():
        if isinstance(wrong, torch.Tensor) and _within_one_step(y, wrong, step):
            fix = (
                "calibrate on every batch of calib_loader"
                if "batch" in name
                else "take the default qconfig of the engine use_engine(backend) set"
            )
            raise AssertionError(f"your int8 output matches a model {name}: {fix}.{where}")
    diff = (y - ref).abs() if y.shape == ref.shape else None
    detail = (
        f"{int((diff > step * 1.001 + 1e-6).sum())} of {ref.numel()} outputs differ by more than one output "
        f"step ({step:.4g}); the largest by {float(diff.max()) / step:.1f} steps"
        if diff is not None
        else f"output shape {tuple(y.shape)}, expected {tuple(ref.shape)}"
    )
    raise AssertionError(
        f"the int8 output differs from PyTorch's static PTQ of the same network: {detail}. Same recipe "
        f"→ same numbers: eval copy, QuantWrapper if no stubs, fuse, default qconfig of the engine, "
        f"prepare, every calibration batch, convert.{where}"
    )


def _on(seed: int, backend: str) -> dict:
    return {**_ptq_case(seed), "backend": _if_supported(backend)}


def _if_supported(backend: str) -> str | None:
    """``backend`` where this PyTorch build has it, else ``None`` (the engine it prefers)."""
    return backend if backend in torch.backends.quantized.supported_engines else None


def _ptq_edge_cases() -> list[dict]:
    # qnnpack for each kind the regular seeds only give x86: CourseCNN without stubs, a random
    # net with stubs, one without, LeNet5
    return [_ptq_case(7), _ptq_case(15), _on(12, "qnnpack"), _on(10, "qnnpack")]


EXERCISES = [
    Exercise(
        id="5.6",
        title="quantize_static(model, calib_loader, backend=None): static PTQ of a network you have not seen",
        target="quantize_static",
        points=3,
        make_case=_ptq_case,
        run=_ptq_run,
        reference=_ptq_reference,
        compare=_ptq_compare,
        edge_cases=_ptq_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hidden_seeds=(4, 5, 6, 8, 1002),
        hint="engine = quantization.use_engine(backend); m = copy.deepcopy(model).eval(); "
        "if not quantization.has_quant_stubs(m): m = tq.QuantWrapper(m).eval(); "
        "groups = your fusable_patterns(m) from 4.2 (every nn.Sequential, longest pattern first); "
        "tq.fuse_modules(m, groups, inplace=True); m.qconfig = tq.get_default_qconfig(engine); "
        "tq.prepare → run every batch of calib_loader under torch.no_grad() → tq.convert.",
    ),
]
