"""Exercise specs for chapter 6 — quantization-aware training.

6.1 ``FakeQuantSTE`` (a ``torch.autograd.Function``): forward equals
``torch.fake_quantize_per_tensor_affine``, backward equals its autograd gradient (the
straight-through estimator: pass the gradient where the value was not clamped, else 0).
6.2 ``qat_train(model, loader, epochs, freeze_observer_epoch, freeze_bn_epoch, lr)``: a QAT
loop whose freeze schedule (observers, BN statistics) is recorded batch by batch and compared
with a reference loop that uses ``torch.ao.quantization.disable_observer`` and
``torch.ao.nn.intrinsic.qat.freeze_bn_stats``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..exercise import Exercise, assert_same
from .ch05 import _quietly
from .together import paired_compare, paired_reference, paired_run, with_regular

# --- 6.1 FakeQuantSTE -------------------------------------------------------------------------

_RANGES = [(0, 255), (-128, 127), (0, 15), (-8, 7), (0, 7)]


def _fq_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    qmin, qmax = _RANGES[seed % len(_RANGES)]
    scale = float(torch.rand(1, generator=g) * 0.2 + 0.01)
    zp = int(torch.randint(qmin, qmax + 1, (1,), generator=g))
    x = torch.randn(5, 40, generator=g) * scale * (qmax - qmin) * 0.4  # a good share gets clamped
    return {"x": x, "grad_out": torch.randn(5, 40, generator=g), "scale": scale, "zero_point": zp,
            "quant_min": qmin, "quant_max": qmax}  # fmt: skip


def _fq_edge_cases() -> list[dict]:
    zeros = _fq_case(3)
    zeros["x"] = torch.zeros_like(zeros["x"])
    outside = _fq_case(4)
    outside["x"] = torch.cat([torch.full((10,), 1e3), torch.full((10,), -1e3)])
    outside["grad_out"] = torch.ones(20)
    ties = {
        "x": torch.arange(-20, 20).float() * 0.5 + 0.25,  # exact halves of scale 0.5
        "grad_out": torch.ones(40),
        "scale": 0.5,
        "zero_point": 3,
        "quant_min": 0,
        "quant_max": 15,
    }
    return [with_regular(zeros, _fq_case(0)), outside, ties]  # x = 0 gives x̂ = 0: not alone


def _fq_args(inputs: dict) -> tuple:
    return inputs["scale"], inputs["zero_point"], inputs["quant_min"], inputs["quant_max"]


def _fq_run(cls, inputs: dict) -> dict:
    if not (isinstance(cls, type) and issubclass(cls, torch.autograd.Function)):
        return {"class": f"{cls!r} is not a torch.autograd.Function subclass"}
    x = inputs["x"].clone().requires_grad_(True)
    y = cls.apply(x, *_fq_args(inputs))
    if not isinstance(y, torch.Tensor) or not y.requires_grad:
        return {"class": "ok", "forward": y if isinstance(y, torch.Tensor) else repr(y), "grad": "no graph"}
    y.backward(inputs["grad_out"])
    return {"class": "ok", "forward": y.detach(), "grad": None if x.grad is None else x.grad.clone()}


def _fq_reference(inputs: dict) -> dict:
    x = inputs["x"].clone().requires_grad_(True)
    y = torch.fake_quantize_per_tensor_affine(x, *_fq_args(inputs))
    y.backward(inputs["grad_out"])
    return {"class": "ok", "forward": y.detach(), "grad": x.grad.clone()}


def _fq_compare(got: Any, expected: dict, inputs: dict) -> None:
    if got.get("class") != "ok":
        raise AssertionError(f"FakeQuantSTE: {got.get('class')}.")
    setting = (
        f"scale={inputs['scale']:.5g}, zero_point={inputs['zero_point']}, "
        f"quant_min={inputs['quant_min']}, quant_max={inputs['quant_max']}"
    )
    f, ef = got["forward"], expected["forward"]
    if not isinstance(f, torch.Tensor):
        raise AssertionError(f"forward must return a tensor, got {f}.")
    if f.shape != ef.shape:
        raise AssertionError(f"forward: shape {tuple(f.shape)} but expected {tuple(ef.shape)}.")
    off = ((f - ef).abs() > 1e-5 + 1e-5 * ef.abs()).float()
    if off.sum() > max(1, ef.numel() // 1000):
        i = int(off.flatten().nonzero()[0])
        raise AssertionError(
            f"forward differs from torch.fake_quantize_per_tensor_affine at {int(off.sum())} of "
            f"{ef.numel()} entries ({setting}); e.g. x = {inputs['x'].flatten()[i].item():.6g}: got "
            f"{f.flatten()[i].item():.6g}, expected {ef.flatten()[i].item():.6g}.\n"
            "  x̂ = (clamp(round(x / scale) + zero_point, quant_min, quant_max) − zero_point) · scale"
        )
    if isinstance(got["grad"], str) or got["grad"] is None:
        raise AssertionError(
            "x got no gradient: forward must work on the tensor from ctx (return a new tensor), and "
            "backward must return a gradient for x (and None for scale, zero_point, quant_min, quant_max)."
        )
    g, eg = got["grad"], expected["grad"]
    wrong = (g - eg).abs() > 1e-6
    if wrong.float().sum() > max(1, eg.numel() // 1000):
        passed_where_clamped = (wrong & (eg == 0)).sum().item()
        blocked_inside = (wrong & (eg != 0)).sum().item()
        raise AssertionError(
            f"backward: {int(wrong.sum())} of {eg.numel()} gradient entries differ ({setting}): "
            f"{passed_where_clamped} should be 0 (x was clamped), {blocked_inside} should pass grad_out "
            "through unchanged. STE: grad_x = grad_out where quant_min ≤ round(x/scale)+zero_point ≤ "
            "quant_max, else 0."
        )


# --- 6.2 qat_train ---------------------------------------------------------------------------------


class _TinyQAT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.fc(self.flatten(self.relu(self.bn(self.conv(self.quant(x)))))))


def _qat_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    epochs = 3 + seed % 2
    freeze_obs = [2, 1, None, 3][seed % 4]
    freeze_bn = [1, 2, 1, None][seed % 4]
    x = torch.randn(48, 1, 6, 6, generator=g)
    teacher = torch.randn(36, 3, generator=g)
    y = (x.flatten(1) @ teacher).argmax(1)
    torch.manual_seed(seed)
    state = _TinyQAT().state_dict()
    return {"state": state, "x": x, "y": y, "batch": 12, "epochs": epochs,
            "freeze_observer_epoch": freeze_obs, "freeze_bn_epoch": freeze_bn, "lr": 1e-2}  # fmt: skip


def _qat_edge_cases() -> list[dict]:
    bn_first = _qat_case(5)
    bn_first.update(freeze_bn_epoch=0, freeze_observer_epoch=1, epochs=2)
    late = _qat_case(6)
    late.update(freeze_bn_epoch=10, freeze_observer_epoch=10, epochs=2)  # after the last epoch: never
    return [bn_first, late]


def _prepared(inputs: dict) -> nn.Module:
    import torch.ao.quantization as tq

    from ..quantization import select_engine

    model = _TinyQAT()
    model.load_state_dict(inputs["state"])
    model.train()
    model = tq.fuse_modules_qat(model, [["conv", "bn", "relu"]])
    model.qconfig = tq.get_default_qat_qconfig(select_engine())  # x86 here, qnnpack on ARM
    return tq.prepare_qat(model)


def _qat_recipe(train_fn, inputs: dict) -> dict:
    """Run ``train_fn`` on a prepared tiny model; record the schedule at every training forward."""
    from torch.ao.quantization import FakeQuantizeBase

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        model = _prepared(inputs)
    fqs = [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]
    convbn = model.conv
    log: list[tuple[str, str, bool]] = []
    versions: list[torch.Tensor] = []

    def hook(mod: nn.Module, args: tuple) -> None:
        if not mod.training:
            return
        flags = {bool(f.observer_enabled[0]) for f in fqs}
        obs = "on" if flags == {True} else "off" if flags == {False} else "mixed"
        bn = "frozen" if getattr(convbn, "freeze_bn", False) else "updating"
        log.append((obs, bn, all(f.fake_quant_enabled[0] for f in fqs)))
        versions.append(convbn.weight.detach().clone())

    model.register_forward_pre_hook(hook)
    first_grad: list[torch.Tensor] = []  # the loss's gradient w.r.t. fc.weight at the first backward
    model.fc.weight.register_hook(lambda g: None if first_grad else first_grad.append(g.detach().clone()))
    ds = torch.utils.data.TensorDataset(inputs["x"], inputs["y"])
    loader = torch.utils.data.DataLoader(ds, batch_size=inputs["batch"])
    before = [p.detach().clone() for p in model.parameters()]
    train_fn(
        model,
        loader,
        inputs["epochs"],
        inputs["freeze_observer_epoch"],
        inputs["freeze_bn_epoch"],
        inputs["lr"],
    )
    per_epoch = len(loader)
    epochs = []
    for e in range(inputs["epochs"]):
        rows = log[e * per_epoch : (e + 1) * per_epoch]
        obs = {r[0] for r in rows}
        bn = {r[1] for r in rows}
        epochs.append(
            {
                "observers": obs.pop() if len(obs) == 1 else f"changes within the epoch: {sorted(obs)}",
                "BN statistics": bn.pop() if len(bn) == 1 else f"changes within the epoch: {sorted(bn)}",
            }
        )
    changed = sum(not torch.equal(a, b) for a, b in zip(versions, versions[1:]))
    return {
        "training forward passes": len(log),
        "schedule per epoch": epochs,
        "fake quantization on in every training step": all(r[2] for r in log),
        "weight updates between training steps": changed,
        "parameters changed": any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters())),
        _FIRST_GRAD: first_grad[0] if first_grad else None,
    }


_FIRST_GRAD = "gradient of fc.weight at the first backward"


def _reference_qat_train(model, loader, epochs, freeze_observer_epoch, freeze_bn_epoch, lr) -> None:
    import torch.ao.nn.intrinsic.qat as nniqat
    import torch.ao.quantization as tq

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for epoch in range(epochs):
        if freeze_bn_epoch is not None and epoch >= freeze_bn_epoch:
            model.apply(nniqat.freeze_bn_stats)
        if freeze_observer_epoch is not None and epoch >= freeze_observer_epoch:
            model.apply(tq.disable_observer)
        model.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()


def _qat_run(fn, inputs: dict) -> dict:
    return _qat_recipe(fn, inputs)


def _qat_reference(inputs: dict) -> dict:
    return _quietly(_qat_recipe, _reference_qat_train, inputs)


def _qat_compare(got: Any, expected: dict, inputs: dict) -> None:
    setting = (
        f"epochs={inputs['epochs']}, freeze_observer_epoch={inputs['freeze_observer_epoch']}, "
        f"freeze_bn_epoch={inputs['freeze_bn_epoch']}"
    )
    n = expected["training forward passes"]
    if got["training forward passes"] != n:
        raise AssertionError(
            f"{got['training forward passes']} forward passes in train mode, expected {n} "
            f"({inputs['epochs']} epochs × {n // inputs['epochs']} batches; {setting}). "
            "Call model.train() and run every batch of the loader once per epoch."
        )
    for e, (g, x) in enumerate(zip(got["schedule per epoch"], expected["schedule per epoch"])):
        if g != x:
            raise AssertionError(
                f"epoch {e} ({setting}): observers {g['observers']}, BN statistics {g['BN statistics']}; "
                f"expected observers {x['observers']}, BN statistics {x['BN statistics']}.\n"
                "  Epochs count from 0. At the *start* of epoch k: if k >= freeze_bn_epoch apply "
                "torch.ao.nn.intrinsic.qat.freeze_bn_stats; if k >= freeze_observer_epoch apply "
                "torch.ao.quantization.disable_observer. None means never."
            )
    if not got["fake quantization on in every training step"]:
        raise AssertionError(
            "fake quantization was switched off during training: freeze observers, not fake quant."
        )
    g, e = got[_FIRST_GRAD], expected[_FIRST_GRAD]
    cos = (
        float(torch.nn.functional.cosine_similarity(g.flatten(), e.flatten(), dim=0))
        if isinstance(g, torch.Tensor) and g.shape == e.shape
        else float("nan")
    )
    if not cos > 0.999:
        raise AssertionError(
            f"the first backward's gradient does not point where cross-entropy's does (cosine {cos:.3f}): "
            "train with the cross-entropy loss, F.cross_entropy(model(x), y) (or nn.CrossEntropyLoss())."
        )
    got = {k: v for k, v in got.items() if k != _FIRST_GRAD}  # any optimizer and scaling are fine
    expected = {k: v for k, v in expected.items() if k != _FIRST_GRAD}
    if got["weight updates between training steps"] < n - 1:
        raise AssertionError(
            f"the weights changed between only {got['weight updates between training steps']} of {n - 1} "
            "consecutive training steps: zero_grad → loss.backward() → optimizer.step() on every batch."
        )
    assert_same(got, expected, inputs)


EXERCISES = [
    Exercise(
        id="6.1",
        title="FakeQuantSTE (straight-through estimator)",
        target="FakeQuantSTE",
        points=2,
        make_case=_fq_case,
        run=paired_run(_fq_run),
        reference=paired_reference(_fq_reference),
        compare=paired_compare(_fq_compare),
        edge_cases=_fq_edge_cases,
        public_seeds=(0, 1, 2, 3),
        hint="forward: save the in-range mask with ctx.save_for_backward; backward: return "
        "grad_output * mask, None, None, None, None.",
    ),
    Exercise(
        id="6.2",
        title="qat_train with a freeze schedule",
        target="qat_train",
        points=3,
        make_case=_qat_case,
        run=_qat_run,
        reference=_qat_reference,
        compare=_qat_compare,
        edge_cases=_qat_edge_cases,
        public_seeds=(0, 2),  # each case trains twice (student + reference): keep the self-check quick
        hidden_seeds=(1001, 1003, 1000),  # seed % 4 picks the schedule: all four appear in grading
        hint="for epoch in range(epochs): apply the freezes due at this epoch, model.train(), "
        "then a normal training loop over loader.",
    ),
]
