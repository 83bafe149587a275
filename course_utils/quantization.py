"""Chapter code for fusion, post-training quantization and QAT (chapters 4–6).

Affine quantization maps a real number ``x`` to an integer ``q`` and back::

    q = clamp(round(x / s) + z, q_min, q_max)        x̂ = (q − z) · s

with scale ``s > 0`` and zero point ``z``. A ``b``-bit grid has ``2^b`` levels: activations
use ``quint8`` with ``[0, 2^b − 1]``, weights ``qint8`` symmetric ``[−2^(b−1), 2^(b−1) − 1]``.

The eager ``torch.ao.quantization`` workflow used here is deprecated since PyTorch 2.8 and
still works in 2.14; the ``torchao_*`` helpers show the current path and return
``AoResult(None, reason)`` where torchao is not installed (any other failure raises).

The quantized engine is not hard-coded: :func:`select_engine` takes the first of ``x86`` →
``fbgemm`` → ``qnnpack`` that ``torch.backends.quantized.supported_engines`` lists (qnnpack on
ARM, e.g. Apple silicon), and every helper's ``backend=None`` means that choice.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
import torch.ao.nn.intrinsic.qat as nniqat
import torch.ao.quantization as tq
from torch import nn
from torch.utils.data import DataLoader

from .training import History, train

__all__ = [
    "AoResult",
    "COURSE_CNN_FUSION_GROUPS",
    "QuantizationError",
    "calibrate",
    "convert_qat",
    "dynamic_ptq",
    "fake_quant_ptq",
    "freeze_observers",
    "fuse_course_cnn",
    "has_quant_stubs",
    "is_quantized",
    "prepare_qat_model",
    "qat_finetune",
    "qconfig_for_bits",
    "qrange",
    "reduce_range_needed",
    "select_engine",
    "static_ptq",
    "torchao_int8_dynamic",
    "torchao_int8_weight_only",
    "torchao_pt2e_x86",
    "use_engine",
]

# Names that fuse_modules needs for CourseCNN: Conv-BN-ReLU twice, then Linear-ReLU.
COURSE_CNN_FUSION_GROUPS: list[list[str]] = [
    ["features.0", "features.1", "features.2"],
    ["features.4", "features.5", "features.6"],
    ["classifier.1", "classifier.2"],
]

BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")
ENGINE_PREFERENCE = ("x86", "fbgemm", "qnnpack")  # x86 CPUs first; qnnpack is the ARM engine


class QuantizationError(ValueError):
    """A model or argument cannot be quantized this way; the message says how to fix it."""


class AoResult(NamedTuple):
    """What a torchao helper returns: the quantized model, or ``None`` and why not."""

    model: nn.Module | None
    reason: str


def select_engine(supported: Sequence[str] | None = None) -> str:
    """The quantized engine to use here: the first of ``x86`` → ``fbgemm`` → ``qnnpack`` in
    ``supported`` (default ``torch.backends.quantized.supported_engines``)."""
    have = list(torch.backends.quantized.supported_engines if supported is None else supported)
    for engine in ENGINE_PREFERENCE:
        if engine in have:
            return engine
    raise QuantizationError(
        f"No int8 engine this course can use in this PyTorch build (it has {', '.join(have) or 'none'}; "
        f"need one of {', '.join(ENGINE_PREFERENCE)})."
    )


def use_engine(backend: str | None = None) -> str:
    """Set ``torch.backends.quantized.engine`` to ``backend`` (``None``: :func:`select_engine`)
    after checking this build supports it; returns the engine set."""
    backend = select_engine() if backend is None else backend
    if backend not in BACKENDS:
        raise QuantizationError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    supported = torch.backends.quantized.supported_engines
    if backend not in supported:
        raise QuantizationError(
            f"This PyTorch build has no {backend!r} quantized engine (it has {', '.join(supported)})."
        )
    torch.backends.quantized.engine = backend
    return backend


def reduce_range_needed(backend: str | None = None) -> bool:
    """Whether 8-bit activations must use ``reduce_range`` (7 bits, ``[0, 127]``) on this CPU.

    Without VNNI, x86 int8 kernels multiply uint8 × int8 pairs and add two products into an
    int16 (``vpmaddubsw``), which saturates for large values: fbgemm/x86/oneDNN then want a spare
    bit. With VNNI (``vpdpbusd`` accumulates into int32) and on qnnpack the full range is safe.
    """
    backend = select_engine() if backend is None else backend
    if backend == "qnnpack":
        return False
    vnni = getattr(torch.cpu, "_is_vnni_supported", None)
    return not (callable(vnni) and vnni())


def fuse_course_cnn(model: nn.Module, qat: bool = False, inplace: bool = False) -> nn.Module:
    """Fuse CourseCNN's Conv-BN-ReLU and Linear-ReLU groups (``COURSE_CNN_FUSION_GROUPS``).

    ``qat=False`` folds BN into the conv (W' = W·γ/σ, b' = (b − μ)·γ/σ + β) and needs eval
    mode; ``qat=True`` keeps BN as a trainable part of a QAT-ready ``ConvBnReLU2d`` and needs
    train mode.
    """
    if qat != model.training:
        want = "train" if qat else "eval"
        raise QuantizationError(
            f"fuse_course_cnn(qat={qat}) needs the model in {want} mode: call model.{want}() first "
            "(eval folds BatchNorm into the conv; QAT fusion keeps BatchNorm trainable)."
        )
    names = {n for n, _ in model.named_modules()}
    missing = [n for group in COURSE_CNN_FUSION_GROUPS for n in group if n not in names]
    if missing:
        raise QuantizationError(
            f"Not a CourseCNN layout: no module named {', '.join(missing)}. "
            "Pass your own name groups to torch.ao.quantization.fuse_modules."
        )
    fuse = tq.fuse_modules_qat if qat else tq.fuse_modules
    return fuse(model, COURSE_CNN_FUSION_GROUPS, inplace=inplace)


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """The integer range of a ``bits``-bit grid: ``[−2^(b−1), 2^(b−1) − 1]`` or ``[0, 2^b − 1]``."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise QuantizationError(f"bits must be an int from 2 to 8 (stored in 8-bit dtypes), got {bits!r}.")
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def qconfig_for_bits(
    bits: int = 8,
    per_channel: bool = True,
    qat: bool = False,
    reduce_range: bool = False,
    fake_quant_minmax: bool = False,
) -> tq.QConfig:
    """A QConfig on a ``bits``-bit grid via ``quant_min``/``quant_max``.

    Activations: ``quint8`` affine on ``[0, 2^b − 1]`` (``[0, 127]`` at 8 bits with
    ``reduce_range``, as fbgemm/x86 want on CPUs without VNNI). Weights: ``qint8`` symmetric on
    ``[−2^(b−1), 2^(b−1) − 1]``, per output channel or per tensor.

    ``qat=False``: MinMax observers (for ``prepare`` → calibrate → ``convert``).
    ``qat=True``: ``FakeQuantize`` modules around moving-average observers (for QAT), or
    around plain MinMax observers with ``fake_quant_minmax=True`` (to simulate PTQ on a grid
    the int8 kernels do not have, e.g. 4 bits).
    """
    a_min, a_max = qrange(bits, signed=False)
    if reduce_range and bits == 8:
        a_max = 127
    w_min, w_max = qrange(bits, signed=True)
    w_scheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    act_kw = dict(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=a_min, quant_max=a_max)
    w_kw = dict(dtype=torch.qint8, qscheme=w_scheme, quant_min=w_min, quant_max=w_max)
    if per_channel:
        w_kw["ch_axis"] = 0
    if qat and not fake_quant_minmax:
        a_obs = tq.MovingAverageMinMaxObserver
        w_obs = tq.MovingAveragePerChannelMinMaxObserver if per_channel else tq.MovingAverageMinMaxObserver
    else:
        a_obs = tq.MinMaxObserver
        w_obs = tq.PerChannelMinMaxObserver if per_channel else tq.MinMaxObserver
    if qat:
        return tq.QConfig(
            activation=tq.FakeQuantize.with_args(observer=a_obs, **act_kw),
            weight=tq.FakeQuantize.with_args(observer=w_obs, **w_kw),
        )
    return tq.QConfig(activation=a_obs.with_args(**act_kw), weight=w_obs.with_args(**w_kw))


def has_quant_stubs(model: nn.Module) -> bool:
    """Whether the model has a ``QuantStub`` (where eager static quantization starts)."""
    return any(isinstance(m, tq.QuantStub) for m in model.modules())


def is_quantized(model: nn.Module) -> bool:
    """Whether any submodule is an eager quantized module (``torch.ao.nn.quantized`` types)."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


@torch.no_grad()
def calibrate(model: nn.Module, loader: Iterable, num_batches: int | None = None) -> int:
    """Run batches through a prepared model so its observers record ranges; returns images seen."""
    seen = 0
    for i, batch in enumerate(loader):
        if num_batches is not None and i >= num_batches:
            break
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        model(x)
        seen += len(x)
    if seen == 0:
        raise QuantizationError("Calibration saw no data: the loader is empty (or num_batches=0).")
    return seen


def static_ptq(
    model: nn.Module,
    calib_loader: Iterable,
    backend: str | None = None,
    qconfig: tq.QConfig | None = None,
    num_batches: int | None = None,
    fuse: bool = True,
) -> nn.Module:
    """Static post-training quantization: fuse → prepare → calibrate → convert (a new model).

    Weights and activations become int8; activation ranges come from ``calib_loader``.
    The model needs a ``QuantStub``/``DeQuantStub`` pair (``pretrained("course_cnn_quant")``).
    ``backend=None`` uses :func:`select_engine`; the qconfig defaults to PyTorch's for it.
    """
    if not has_quant_stubs(model):
        raise QuantizationError(
            "static_ptq needs a model with QuantStub/DeQuantStub: eager mode never quantizes the "
            "input for you, so the first quantized conv would receive a float tensor. Use "
            'pretrained("course_cnn_quant") or CourseCNN(quant_stubs=True).'
        )
    backend = use_engine(backend)
    m = copy.deepcopy(model).eval()
    if fuse:
        fuse_course_cnn(m, inplace=True)
    m.qconfig = qconfig or tq.get_default_qconfig(backend)
    tq.prepare(m, inplace=True)
    calibrate(m, calib_loader, num_batches)
    return tq.convert(m, inplace=True)


def dynamic_ptq(model: nn.Module, dtype: torch.dtype = torch.qint8) -> nn.Module:
    """Dynamic quantization of every ``nn.Linear``/``nn.LSTM``: int8 weights, activations
    quantized on the fly per batch (no calibration). Returns a new model."""
    if dtype not in (torch.qint8, torch.float16):
        raise QuantizationError(f"dynamic_ptq supports torch.qint8 or torch.float16, got {dtype}.")
    return tq.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear, nn.LSTM}, dtype=dtype)


def prepare_qat_model(
    model: nn.Module,
    bits: int = 8,
    backend: str | None = None,
    per_channel: bool = True,
    qconfig: tq.QConfig | None = None,
    reduce_range: bool | None = None,
) -> nn.Module:
    """A QAT copy of CourseCNN in train mode: fused with ``fuse_modules_qat`` (BN stays
    trainable), fake-quantized with ``qconfig`` or ``qconfig_for_bits(bits, qat=True)``.

    ``reduce_range=None`` means :func:`reduce_range_needed` (7-bit activations at 8 bits on
    x86 CPUs without VNNI, full 8 bits otherwise); read the grid from the model, e.g.
    ``model.features[0].activation_post_process.quant_max``."""
    if not has_quant_stubs(model):
        raise QuantizationError(
            'QAT needs QuantStub/DeQuantStub: use pretrained("course_cnn_quant") or CourseCNN(quant_stubs=True).'
        )
    backend = use_engine(backend)
    if reduce_range is None:
        reduce_range = reduce_range_needed(backend)
    m = copy.deepcopy(model).train()
    fuse_course_cnn(m, qat=True, inplace=True)
    m.qconfig = qconfig or qconfig_for_bits(
        bits, per_channel=per_channel, qat=True, reduce_range=reduce_range
    )
    return tq.prepare_qat(m, inplace=True)


def fake_quant_ptq(
    model: nn.Module,
    calib_loader: Iterable,
    bits: int = 8,
    per_channel: bool = True,
    num_batches: int | None = None,
    backend: str | None = None,
    reduce_range: bool | None = None,
) -> nn.Module:
    """PTQ simulated on a ``bits``-bit grid: the QAT graph of ``prepare_qat_model`` with MinMax
    observers, calibrated on ``calib_loader`` with BN frozen, then observers frozen (eval mode).

    This is "QAT with zero training steps", so PTQ and QAT compare on the same fake-quant graph
    (``reduce_range=None``: as :func:`prepare_qat_model`).
    """
    backend = use_engine(backend)
    if reduce_range is None:
        reduce_range = reduce_range_needed(backend)
    qconfig = qconfig_for_bits(bits, per_channel, qat=True, reduce_range=reduce_range, fake_quant_minmax=True)
    m = prepare_qat_model(model, bits, backend, per_channel, qconfig=qconfig).eval()
    m.apply(nniqat.freeze_bn_stats)
    calibrate(m, calib_loader, num_batches)
    return freeze_observers(m)


def freeze_observers(model: nn.Module) -> nn.Module:
    """Stop every observer of a prepared/QAT model from updating its range (fake quant stays on)."""
    return model.apply(tq.disable_observer)


def _observers_have_data(model: nn.Module) -> bool:
    """Whether every MinMax-type observer has recorded a range (min_val is finite, non-empty)."""
    for mod in model.modules():
        if isinstance(mod, tq.ObserverBase) and hasattr(mod, "min_val"):
            mv = mod.min_val
            if mv.numel() == 0 or not torch.isfinite(mv).all():
                return False
    return True


def qat_finetune(
    model: nn.Module,
    loaders: dict[str, DataLoader],
    epochs: int = 3,
    freeze_observer_epoch: int | None = 2,
    freeze_bn_epoch: int | None = 1,
    lr: float = 1e-4,
    progress: bool = True,
) -> History:
    """Fine-tune a QAT model (from ``prepare_qat_model``) with a freeze schedule.

    Epochs count from 0. From epoch ``freeze_bn_epoch`` on, BN uses its running statistics
    (``freeze_bn_stats``); from epoch ``freeze_observer_epoch`` on, quantization ranges stop
    moving (``disable_observer``). ``None`` never freezes. Returns the training ``History``.
    """
    for name, value in (
        ("freeze_observer_epoch", freeze_observer_epoch),
        ("freeze_bn_epoch", freeze_bn_epoch),
    ):
        if value is not None and value < 0:
            raise QuantizationError(f"{name} must be >= 0 or None, got {value}.")
    if freeze_observer_epoch == 0 and not _observers_have_data(model):
        raise QuantizationError(
            "freeze_observer_epoch=0 freezes observers that have seen no data, so there are no "
            "ranges to quantize with. Calibrate first (course_utils.quantization.calibrate) or "
            "freeze from epoch 1 on."
        )

    def apply_schedule(next_epoch: int, m: nn.Module) -> None:
        if freeze_bn_epoch is not None and next_epoch >= freeze_bn_epoch:
            m.apply(nniqat.freeze_bn_stats)
        if freeze_observer_epoch is not None and next_epoch >= freeze_observer_epoch:
            m.apply(tq.disable_observer)

    apply_schedule(0, model)
    return train(
        model,
        loaders,
        epochs=epochs,
        lr=lr,
        on_epoch_end=lambda epoch, m: apply_schedule(epoch + 1, m),
        progress=progress,
        desc="QAT",
    )


def convert_qat(model: nn.Module) -> nn.Module:
    """An int8 model from a QAT model (a new model; the QAT model is left untouched)."""
    m = copy.deepcopy(model).eval()
    return tq.convert(m, inplace=True)


# --- torchao: the current path -----------------------------------------------------------


def _torchao_quantize(model: nn.Module, config_name: str) -> AoResult:
    try:
        import torchao.quantization as aoq
    except ImportError as err:  # pragma: no cover - torchao is a dependency
        return AoResult(None, f"torchao is not importable: {err}")
    m = copy.deepcopy(model).eval()
    aoq.quantize_(m, getattr(aoq, config_name)())  # a failure here is a bug to see, not to hide
    return AoResult(m, f"torchao quantize_ with {config_name}() on every nn.Linear")


def torchao_int8_dynamic(model: nn.Module) -> AoResult:
    """torchao ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` on a copy.

    Only ``nn.Linear`` layers change (convs stay float). Returns ``AoResult(None, reason)``
    when it does not run here.
    """
    return _torchao_quantize(model, "Int8DynamicActivationInt8WeightConfig")


def torchao_int8_weight_only(model: nn.Module) -> AoResult:
    """torchao ``quantize_(model, Int8WeightOnlyConfig())`` on a copy (Linear weights int8)."""
    return _torchao_quantize(model, "Int8WeightOnlyConfig")


def torchao_pt2e_x86(
    model: nn.Module, example_input: torch.Tensor, calib: Iterable, num_batches: int | None = None
) -> AoResult:
    """Static int8 PTQ the current way: ``torch.export`` → ``prepare_pt2e`` with
    ``X86InductorQuantizer`` → calibrate → ``convert_pt2e``.

    The result is an exported graph with explicit quantize/dequantize ops (runs in eager;
    ``torch.compile`` lowers it to int8 kernels). ``AoResult(None, reason)`` only when torchao's
    PT2E modules are not importable; an export or quantization error raises.
    """
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as err:
        return AoResult(None, f"torchao PT2E is not importable here: {type(err).__name__}: {err}")
    m = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*export.*", category=UserWarning)
        batch = torch.export.Dim.AUTO  # any batch size, so calibration batches may differ
        exported = torch.export.export(m, (example_input,), dynamic_shapes=({0: batch},)).module()
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, calib, num_batches)
    converted = convert_pt2e(prepared)
    # exported graphs refuse .eval()/.train(); this makes them switch BN/dropout instead,
    # so evaluate() and the comparison table can treat the result like any module
    allow_exported_model_train_eval(converted)
    return AoResult(converted, "torch.export + prepare_pt2e(X86InductorQuantizer) + convert_pt2e")
