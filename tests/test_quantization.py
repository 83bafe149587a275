"""course_utils.quantization: fusion, qconfigs, PTQ, QAT helpers and the torchao paths."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from course_utils import quantization as Q
from course_utils.models import CourseCNN
from course_utils.training import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    """A briefly trained CourseCNN with stubs (trained here: no cache, ~2 s)."""
    from course_utils.data import load_digits_dataset
    from course_utils.training import seed_everything, train

    seed_everything(0)
    model = CourseCNN(quant_stubs=True)
    train(model, load_digits_dataset().loaders(64), epochs=2, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def loaders():
    from course_utils.data import load_digits_dataset

    return load_digits_dataset().loaders(64)


def test_fuse_course_cnn_preserves_outputs_and_checks_mode(cnn, digits) -> None:
    x = digits.example_input(8)
    fused = Q.fuse_course_cnn(copy.deepcopy(cnn))
    assert type(fused.features[0]).__name__ == "ConvReLU2d" and isinstance(fused.features[1], nn.Identity)
    assert type(fused.classifier[1]).__name__ == "LinearReLU"
    torch.testing.assert_close(fused(x), cnn(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(Q.QuantizationError, match="eval mode"):
        Q.fuse_course_cnn(copy.deepcopy(cnn).train())
    qat = Q.fuse_course_cnn(copy.deepcopy(cnn).train(), qat=True)
    assert type(qat.features[0]).__name__ == "ConvBnReLU2d"  # BN kept for training
    with pytest.raises(Q.QuantizationError, match="Not a CourseCNN"):
        Q.fuse_course_cnn(nn.Sequential(nn.Linear(2, 2)).eval())


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_qconfig_for_bits_ranges(bits: int) -> None:
    for qat in (False, True):
        qc = Q.qconfig_for_bits(bits, qat=qat)
        act, w = qc.activation(), qc.weight()
        assert (act.quant_min, act.quant_max) == (0, 2**bits - 1)
        assert (w.quant_min, w.quant_max) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        assert isinstance(act, tq.FakeQuantize) == qat
    assert Q.qconfig_for_bits(8, reduce_range=True).activation().quant_max == 127


def test_qrange_rejects_bad_bits() -> None:
    for bad in (1, 9, 4.0):
        with pytest.raises(Q.QuantizationError, match="bits must be"):
            Q.qrange(bad, signed=True)


def test_qconfig_for_bits_grid_has_2_pow_b_levels() -> None:
    obs = Q.qconfig_for_bits(4, qat=True).activation()
    x = torch.linspace(0, 1, 1000)
    y = obs(x)
    assert y.unique().numel() == 16


def test_static_ptq_quantizes_keeps_accuracy_and_shrinks(cnn, loaders) -> None:
    from course_utils.metrics import model_size_bytes

    q = Q.static_ptq(cnn, loaders["train"], num_batches=4)
    assert Q.is_quantized(q) and not Q.is_quantized(cnn)
    assert not [m for m in q.modules() if type(m) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d)]
    assert evaluate(q, loaders["test"]) >= evaluate(cnn, loaders["test"]) - 0.01
    assert model_size_bytes(cnn) / model_size_bytes(q) >= 3.5


def test_static_ptq_without_stubs_explains(loaders) -> None:
    with pytest.raises(Q.QuantizationError, match="QuantStub"):
        Q.static_ptq(CourseCNN().eval(), loaders["train"])


def test_calibrate_rejects_empty_loader(cnn) -> None:
    with pytest.raises(Q.QuantizationError, match="no data"):
        Q.calibrate(cnn, [])


def test_dynamic_ptq_swaps_linear_only(cnn, loaders) -> None:
    d = Q.dynamic_ptq(cnn)
    dyn = [n for n, m in d.named_modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert dyn == ["classifier.1", "classifier.3"]
    assert type(d.features[0]) is nn.Conv2d  # convolutions stay float
    assert evaluate(d, loaders["test"]) >= evaluate(cnn, loaders["test"]) - 0.01
    with pytest.raises(Q.QuantizationError):
        Q.dynamic_ptq(cnn, dtype=torch.int32)


def test_qat_schedule_and_convert(cnn, loaders) -> None:
    m = Q.prepare_qat_model(cnn, bits=8)
    assert m.training
    fqs = [f for f in m.modules() if isinstance(f, tq.FakeQuantizeBase)]
    assert fqs and all(int(f.observer_enabled[0]) for f in fqs)
    small = {"train": [next(iter(loaders["train"]))], "val": loaders["val"]}
    hist = Q.qat_finetune(m, small, epochs=2, freeze_observer_epoch=1, freeze_bn_epoch=1, progress=False)
    assert len(hist.train_loss) == 2
    assert not any(int(f.observer_enabled[0]) for f in fqs)
    assert m.features[0].freeze_bn
    q = Q.convert_qat(m)
    assert Q.is_quantized(q) and not Q.is_quantized(m)
    assert evaluate(q, loaders["test"]) > 0.9


def test_qat_finetune_rejects_freezing_unobserved(cnn, loaders) -> None:
    m = Q.prepare_qat_model(cnn, bits=4)
    with pytest.raises(Q.QuantizationError, match="seen no data"):
        Q.qat_finetune(m, loaders, epochs=1, freeze_observer_epoch=0, progress=False)
    with pytest.raises(Q.QuantizationError, match=">= 0"):
        Q.qat_finetune(m, loaders, epochs=1, freeze_bn_epoch=-1, progress=False)


def test_fake_quant_ptq_lower_bits_cost_accuracy(cnn, loaders) -> None:
    acc = {
        b: evaluate(Q.fake_quant_ptq(cnn, loaders["train"], bits=b, num_batches=4), loaders["test"])
        for b in (8, 2)
    }
    assert acc[8] > acc[2] + 0.05  # a 2-bit grid (4 levels) must hurt


def test_torchao_paths_return_model_or_reason(cnn, loaders, digits) -> None:
    plain = CourseCNN()
    plain.load_state_dict({k: v for k, v in cnn.state_dict().items()})
    plain.eval()
    for res in (Q.torchao_int8_dynamic(plain), Q.torchao_int8_weight_only(plain)):
        assert isinstance(res.reason, str) and res.reason
        if res.model is not None:
            assert evaluate(res.model, loaders["test"]) >= evaluate(plain, loaders["test"]) - 0.02
    res = Q.torchao_pt2e_x86(plain, digits.example_input(8), loaders["train"], num_batches=2)
    assert isinstance(res.reason, str)
    if res.model is not None:
        assert evaluate(res.model, loaders["test"]) >= evaluate(plain, loaders["test"]) - 0.02
    with pytest.raises(Exception, match="channels"):  # wrong input shape: the error shows, not hidden
        Q.torchao_pt2e_x86(plain, torch.randn(2, 3, 5, 5), loaders["train"])


@pytest.mark.parametrize(
    "supported, expected",
    [
        (["qnnpack", "onednn", "x86", "fbgemm"], "x86"),  # Linux x86 wheel
        (["qnnpack", "fbgemm"], "fbgemm"),  # older x86 build
        (["qnnpack", "none"], "qnnpack"),  # Apple silicon / ARM
    ],
)
def test_select_engine_prefers_x86_then_fbgemm_then_qnnpack(monkeypatch, supported, expected) -> None:
    assert Q.select_engine(supported) == expected
    # supported_engines is a read-only descriptor on the module's class: patch it there
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", supported)
    assert Q.select_engine() == expected  # default: what this torch build reports


def test_select_engine_without_int8_engine_explains(monkeypatch) -> None:
    with pytest.raises(Q.QuantizationError, match="need one of x86, fbgemm, qnnpack"):
        Q.select_engine(["none", "onednn"])
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", ["none"])
    with pytest.raises(Q.QuantizationError, match="has none"):
        Q.use_engine()


def test_helpers_use_the_selected_engine(monkeypatch, cnn, loaders) -> None:
    old = torch.backends.quantized.engine
    monkeypatch.setattr(Q, "select_engine", lambda supported=None: "qnnpack")
    try:
        Q.static_ptq(cnn, loaders["train"], num_batches=1)
        assert torch.backends.quantized.engine == "qnnpack"
        assert Q.reduce_range_needed() is False  # qnnpack: full 8-bit activations
        qat = Q.prepare_qat_model(cnn)
        assert qat.features[0].activation_post_process.quant_max == 255
    finally:
        torch.backends.quantized.engine = old
    with pytest.raises(Q.QuantizationError, match="Unknown backend"):
        Q.use_engine("tpu")


@pytest.mark.parametrize("vnni, expected_max", [(False, 127), (True, 255)])
def test_8bit_qat_activations_are_7_bit_on_x86_without_vnni(monkeypatch, cnn, vnni, expected_max) -> None:
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: vnni)
    assert Q.reduce_range_needed("x86") is (not vnni) and Q.reduce_range_needed("qnnpack") is False
    qat = Q.prepare_qat_model(cnn, bits=8, backend="x86")
    assert qat.features[0].activation_post_process.quant_max == expected_max
    assert (
        Q.prepare_qat_model(cnn, bits=8, backend="x86", reduce_range=False)
        .features[0]
        .activation_post_process.quant_max
        == 255
    )  # explicit full range wins
    assert Q.prepare_qat_model(cnn, bits=4, backend="x86").features[0].activation_post_process.quant_max == 15
