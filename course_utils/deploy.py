"""CPU deployment runtimes for one model: PyTorch eager / channels_last / compiled / int8 PT2E,
ONNX Runtime fp32 / int8, OpenVINO fp32 / NNCF int8.

Every builder returns a :class:`Runtime`: ``predict(x) -> logits`` (a torch tensor, so accuracy
is measured the same way for all), the bytes the deployed artifact takes on disk, and a note.
Runtimes with their own thread pools are built with ``threads`` so that a latency comparison
(``course_utils.latency.interleaved_ms``) runs every variant on the same number of cores.
Nothing is downloaded: ONNX and OpenVINO files are written to ``workdir``.

:func:`fast_bias_correction_shifts` reproduces, in fp32, the bias shifts NNCF's fast bias
correction would apply (why NNCF int8 is built with full bias correction here).
"""

from __future__ import annotations

import atexit
import copy
import io
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "Runtime",
    "work_dir",
    "eager",
    "channels_last",
    "compiled",
    "pt2e_int8",
    "export_onnx",
    "onnxruntime_fp32",
    "onnxruntime_int8",
    "openvino_fp32",
    "openvino_int8",
    "state_dict_bytes",
    "untie_relu",
    "openvino_default_precision",
    "BiasShift",
    "fast_bias_correction_shifts",
]


@dataclass
class Runtime:
    """A deployed variant: ``predict(x)`` returns logits as a torch tensor."""

    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    size_bytes: int
    note: str = ""


def work_dir(prefix: str = "course-deploy-") -> Path:
    """A fresh temporary folder for exported models (ONNX, OpenVINO IR), removed when the Python
    process (the notebook's kernel) exits: a lesson run leaves no ~60 MB of files behind in /tmp."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the size of a PyTorch checkpoint on disk."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def _files_bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def eager(model: nn.Module) -> Runtime:
    """fp32 eager, NCHW (the default memory format)."""
    m = model.eval()
    return Runtime("fp32 eager", m, state_dict_bytes(m))


def channels_last(model: nn.Module) -> Runtime:
    """fp32 eager with weights and inputs in ``torch.channels_last`` (NHWC): oneDNN convs skip reorders."""
    m = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    return Runtime(
        "fp32 channels_last",
        lambda x: m(x.contiguous(memory_format=torch.channels_last)),
        state_dict_bytes(m),
    )


def compiled(model: nn.Module, example_input: torch.Tensor) -> Runtime:
    """fp32 ``torch.compile`` (Inductor) of the channels_last model; compiled on the first call here."""
    m = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    fn = torch.compile(m, dynamic=False)
    with torch.inference_mode():
        fn(example_input.contiguous(memory_format=torch.channels_last))  # compile now, not while timed
    return Runtime(
        "fp32 compiled",
        lambda x: fn(x.contiguous(memory_format=torch.channels_last)),
        state_dict_bytes(m),
        "torch.compile (Inductor), channels_last",
    )


def _basic_block_forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu_out(self.bn2(self.conv2(out)) + identity)


def untie_relu(model: nn.Module) -> nn.Module:
    """Give each torchvision ``BasicBlock`` its own ReLU after the residual sum (in place).

    torchvision calls one ``self.relu`` module twice per block; PT2E quantizers match patterns
    by source module, so ``X86InductorQuantizer`` sees a ReLU "partition" with two outputs and
    raises ``Input partition has more than one output node``. Same math, one module per use.
    """
    from torchvision.models.resnet import BasicBlock

    for block in model.modules():
        if isinstance(block, BasicBlock) and not hasattr(block, "relu_out"):
            block.relu_out = nn.ReLU()
            block.forward = _basic_block_forward.__get__(block)
    return model


def pt2e_int8(model: nn.Module, example_input: torch.Tensor, calib: Iterable[torch.Tensor]) -> Runtime:
    """int8 via PT2E: ``torch.export`` → ``prepare_pt2e(X86InductorQuantizer)`` → calibrate →
    ``convert_pt2e`` → ``torch.compile`` (Inductor fuses quantize/dequantize into int8 kernels).
    Size: ``torch.save`` of the converted model's state_dict."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    m = untie_relu(copy.deepcopy(model).eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(m, (example_input,)).module()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for x in calib:
                prepared(x)
        converted = convert_pt2e(prepared)
        fn = torch.compile(converted, dynamic=False)
        with torch.inference_mode():
            fn(example_input)
    # checkpoint size: int8 weights, but BN parameters stay fp32 and zero points int64 until
    # Inductor folds them at compile time, so this file is not 4× smaller
    return Runtime("int8 PT2E compiled", fn, state_dict_bytes(converted), "torchao X86InductorQuantizer")


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: Path) -> Path:
    """``torch.onnx.export`` (the torch.export-based exporter) with a dynamic batch dimension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            m,
            (example_input,),
            dynamo=True,
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        prog.save(str(path), external_data=False)
    return path


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.numpy()})[0])

    return predict


def onnxruntime_fp32(onnx_path: Path, threads: int = 1) -> Runtime:
    """ONNX Runtime (CPU execution provider, all graph optimizations) on the fp32 ONNX file."""
    return Runtime("ORT fp32", _ort_session(onnx_path, threads), _files_bytes(Path(onnx_path)))


def onnxruntime_int8(
    onnx_path: Path, calib: Iterable[torch.Tensor], out_path: Path, threads: int = 1
) -> Runtime:
    """``onnxruntime.quantization.quantize_static``: QDQ format, int8 per-channel weights,
    uint8 activations with MinMax calibration on ``calib``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [x.numpy() for x in calib]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"x": x}

    out_path = Path(out_path)
    pre = out_path.with_suffix(".pre.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    pre.unlink(missing_ok=True)
    return Runtime(
        "ORT int8", _ort_session(out_path, threads), _files_bytes(out_path), "quantize_static (QDQ)"
    )


def _ov_compile(ov_model, threads: int, precision: str | None):
    import openvino as ov
    import openvino.properties.hint as hints

    config: dict = {"INFERENCE_NUM_THREADS": threads, hints.performance_mode: hints.PerformanceMode.LATENCY}
    if precision is not None:
        config[hints.inference_precision] = precision
    compiled_model = ov.Core().compile_model(ov_model, "CPU", config)
    request = compiled_model.create_infer_request()

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(request.infer([x.numpy()])[0].copy())

    return predict


def _ov_size(ov_model, path: Path) -> int:
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return _files_bytes(path, path.with_suffix(".bin"))


def openvino_default_precision() -> str:
    """OpenVINO's default ``INFERENCE_PRECISION_HINT`` on this CPU (bf16 where the CPU has AMX/avx512_bf16)."""
    import openvino as ov

    return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def openvino_fp32(model: nn.Module, example_input: torch.Tensor, workdir: Path, threads: int = 1):
    """``openvino.convert_model`` of the PyTorch model, compiled with precision forced to f32
    (``INFERENCE_PRECISION_HINT``; the default is bf16 on CPUs with native bf16).
    Returns ``(Runtime, ov_model)``; the ov_model feeds :func:`openvino_int8`."""
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(copy.deepcopy(model).eval(), example_input=example_input)
    size = _ov_size(ov_model, Path(workdir) / "model_fp32.xml")
    rt = Runtime("OpenVINO fp32", _ov_compile(ov_model, threads, "f32"), size, "INFERENCE_PRECISION_HINT=f32")
    return rt, ov_model


@contextmanager
def _silent_rich():
    """NNCF draws ``rich`` progress bars on rich's global console; in a notebook each becomes a
    stream of ANSI frames and widget updates in the cell's output. Quantizing 300 images takes
    seconds, so swap in a console that writes nowhere for the call."""
    try:
        import rich
        from rich.console import Console
    except ImportError:  # pragma: no cover - nncf depends on rich
        yield
        return
    old = rich.get_console()
    rich._console = Console(file=io.StringIO(), force_jupyter=False, force_terminal=False)
    try:
        yield
    finally:
        rich._console = old


def openvino_int8(
    ov_model,
    calib: Iterable[torch.Tensor],
    workdir: Path,
    threads: int = 1,
    subset_size: int = 300,
    fast_bias_correction: bool = False,
) -> Runtime:
    """NNCF post-training int8 (``nncf.quantize`` on the OpenVINO model: min-max calibration +
    bias correction), compiled by OpenVINO. No C++ extension build: the OpenVINO backend.

    ``fast_bias_correction=False`` (NNCF's default is ``True``) runs each quantized layer on the
    calibration samples themselves; the fast variant feeds it a constant image of its input's
    channel means, which misreads zero-padding border effects on small feature maps as
    quantization error (see :func:`fast_bias_correction_shifts`)."""
    import nncf

    data = [x.numpy() for x in calib]
    with warnings.catch_warnings(), _silent_rich():
        warnings.simplefilter("ignore")
        q = nncf.quantize(
            ov_model,
            nncf.Dataset(data),
            subset_size=min(subset_size, len(data)),
            fast_bias_correction=fast_bias_correction,
        )
    size = _ov_size(q, Path(workdir) / "model_int8.xml")
    note = "nncf.quantize, " + ("fast bias correction" if fast_bias_correction else "bias correction")
    return Runtime("OpenVINO int8 (NNCF)", _ov_compile(q, threads, None), size, note)


@dataclass
class BiasShift:
    """What NNCF's fast bias correction would add to the bias of one conv (+ its BN), in fp32."""

    conv: str
    input_hw: int
    max_abs_shift: float
    magnitude: float
    applied: bool


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where a Conv2d's only user is a BatchNorm2d (found by torch.fx)."""
    gm = torch.fx.symbolic_trace(model)
    mods = dict(model.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(node.target), nn.Conv2d) and len(node.users) == 1:
            (user,) = node.users
            if user.op == "call_module" and isinstance(mods.get(user.target), nn.BatchNorm2d):
                pairs.append((str(node.target), str(user.target)))
    return pairs


def fast_bias_correction_shifts(
    model: nn.Module, calib: torch.Tensor, threshold: float = 2.0
) -> tuple[list[BiasShift], nn.Module]:
    """NNCF's fast bias correction without quantization: the part of its shift that is not
    quantization error.

    For a conv with folded bias ``b`` and input ``x`` (calibration batch), fast bias correction
    feeds the layer a spatially constant input ``μ_c = mean_{n,h,w} x`` and sets
    ``shift_o = mean_{n,h,w} y_o(x) − mean_{h,w} y_o(μ)``, applied when
    ``max_o |shift_o / b_o| < threshold`` (NNCF's default 2). A conv is linear, so in fp32 the
    shift would be 0 — except where zero padding meets a non-uniform input: the border outputs
    of the constant image differ from real data's, more so on small feature maps. Returns one
    row per conv→BN pair and a copy of ``model`` with the applied shifts added to the BN biases.
    """
    m = copy.deepcopy(model).eval()
    mods = dict(m.named_modules())
    pairs = _conv_bn_pairs(m)
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        mods[c].register_forward_hook(lambda _m, i, _o, c=c: inputs.__setitem__(c, i[0].detach()))
        for c, _ in pairs
    ]
    with torch.no_grad():
        m(calib)
    for h in hooks:
        h.remove()
    rows, shifts = [], {}
    with torch.no_grad():
        for c, b in pairs:
            conv, bn, x = mods[c], mods[b], inputs[c]
            const = x.mean((0, 2, 3), keepdim=True).expand_as(x[:1]).contiguous()
            shift = bn(conv(x)).mean((0, 2, 3)) - bn(conv(const)).mean((0, 2, 3))
            folded = bn.bias - bn.running_mean * bn.weight / (bn.running_var + bn.eps).sqrt()
            if conv.bias is not None:
                folded = folded + conv.bias * bn.weight / (bn.running_var + bn.eps).sqrt()
            magnitude = float((shift / folded).abs().max())
            applied = magnitude < threshold
            rows.append(BiasShift(c, x.shape[-1], float(shift.abs().max()), magnitude, applied))
            if applied:
                shifts[b] = shift
        for b, shift in shifts.items():
            mods[b].bias += shift
    return rows, m
