"""The explorers, driven headless: set control values, assert the measured outputs change."""

from __future__ import annotations

import sys

import pytest
import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
from torch.nn.utils import prune
from torch.utils.data import DataLoader, Subset

from course_utils import widgets as W
from course_utils.data import load_digits_dataset
from course_utils.training import evaluate, pretrained


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return pretrained("course_cnn", progress=False)


@pytest.fixture(scope="module")
def loader() -> DataLoader:
    test = load_digits_dataset().test
    return DataLoader(Subset(test, range(160)), batch_size=160)


# --- the math, checked against PyTorch -------------------------------------------------------


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_quant_params_match_pytorch_observers(bits: int, symmetric: bool, per_channel: bool) -> None:
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(bits)) * 0.2 + 0.05
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    kw = dict(
        dtype=torch.qint8 if symmetric else torch.quint8,
        quant_min=qmin,
        quant_max=qmax,
        qscheme=(
            (torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
            if per_channel
            else (torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
        ),
    )
    obs = PerChannelMinMaxObserver(ch_axis=0, **kw) if per_channel else MinMaxObserver(**kw)
    obs(w)
    ref_scale, ref_zp = obs.calculate_qparams()
    scale, zp, got_min, got_max = W.quant_params(w, bits, symmetric, per_channel)
    assert (got_min, got_max) == (qmin, qmax)
    torch.testing.assert_close(scale, ref_scale.reshape(-1).float())
    torch.testing.assert_close(zp.long(), ref_zp.reshape(-1).long())


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning")
@pytest.mark.parametrize("scheme", W.QUANT_SCHEMES)
def test_fake_quantize_8bit_matches_real_int8_round_trip(scheme: str) -> None:
    w = torch.randn(6, 20, generator=torch.Generator().manual_seed(1))
    got = W.fake_quantize(w, 8, scheme)
    symmetric, per_channel = scheme.startswith("symmetric"), scheme.endswith("per-channel")
    scale, zp, _, _ = W.quant_params(w, 8, symmetric, per_channel)
    dtype = torch.qint8 if symmetric else torch.quint8
    if per_channel:
        q = torch.quantize_per_channel(w, scale.double(), zp.long(), 0, dtype)
    else:
        q = torch.quantize_per_tensor(w, float(scale), int(zp), dtype)
    torch.testing.assert_close(got, q.dequantize())
    assert len(torch.unique(got)) <= 256


def test_fake_quantize_error_shrinks_with_bits_and_per_channel() -> None:
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(2)) * torch.linspace(0.01, 1, 32)[:, None]
    mse = {
        (b, s): float((W.fake_quantize(w, b, s) - w).pow(2).mean())
        for b in (2, 4, 8)
        for s in W.QUANT_SCHEMES
    }
    for s in W.QUANT_SCHEMES:
        assert mse[(2, s)] > mse[(4, s)] > mse[(8, s)]
    # channels with very different ranges: one scale per channel fits each far better
    assert mse[(4, "symmetric per-channel")] < mse[(4, "symmetric per-tensor")] / 2


def test_prune_copy_leaves_the_original_and_prunes_the_requested_fraction(model: torch.nn.Module) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = W.prune_copy(model, 0.7, W.PRUNING_METHODS[0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} of the original model changed"
    for name, mod in W.prunable_layers(pruned):
        assert prune.is_pruned(mod), name
        assert abs(float((mod.weight == 0).float().mean()) - 0.7) < 0.01, name
    out_name, out_layer = [(n, m) for n, m in pruned.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert not prune.is_pruned(out_layer), f"the output layer {out_name} must stay dense"


def test_structured_pruning_zeroes_whole_rows_and_random_is_seeded(model: torch.nn.Module) -> None:
    p = W.prune_copy(model, 0.5, W.PRUNING_METHODS[1], layers=["classifier.1"])
    w = p.classifier[1].weight
    zero_rows = (w == 0).all(dim=1)
    assert int(zero_rows.sum()) == w.shape[0] // 2
    assert bool(((w != 0).any(dim=1) | zero_rows).all())
    assert not prune.is_pruned(p.features[0])

    state = torch.random.get_rng_state()
    a = W.prune_copy(model, 0.5, W.PRUNING_METHODS[2], seed=3).classifier[1].weight_mask
    b = W.prune_copy(model, 0.5, W.PRUNING_METHODS[2], seed=3).classifier[1].weight_mask
    c = W.prune_copy(model, 0.5, W.PRUNING_METHODS[2], seed=4).classifier[1].weight_mask
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(state, torch.random.get_rng_state()), "random pruning must not move the global RNG"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: W.prune_copy(m, 1.5), "amount must be a fraction"),
        (lambda m: W.prune_copy(m, 0.5, "magnitude"), "Unknown pruning method"),
        (lambda m: W.prune_copy(m, 0.5, layers=["nope"]), "No prunable layer"),
        (lambda m: W.fake_quantize(m.classifier[1].weight, 1), "bits must be between"),
        (lambda m: W.fake_quantize(m.classifier[1].weight, 4, "log"), "Unknown scheme"),
        (lambda m: W.pruning_explorer("model.pt", []), "needs a trained nn.Module"),
        (lambda m: W.pruning_explorer(m, None), "needs a loader"),
        (lambda m: W.pruning_explorer(m, [], scope="conv9"), "Unknown scope"),
        (lambda m: W.quantization_explorer(torch.empty(0)), "empty tensor"),
    ],
)
def test_bad_input_gives_a_clear_error(model: torch.nn.Module, call, message: str) -> None:
    with pytest.raises(W.ExplorerError, match=message):
        call(model)


# --- the explorers, driven like a person would ---------------------------------------------


def test_pruning_explorer_updates_accuracy_mask_and_histogram(model, loader) -> None:
    exp = W.pruning_explorer(model, loader, sparsity=0.2)
    assert exp.interactive and set(exp.controls) == {"sparsity", "method", "scope"}
    label0, mask0, hist0 = exp.accuracy_label.value, exp.images["mask"].value, exp.images["histogram"].value
    acc0 = exp.state["accuracy"]
    assert acc0 == pytest.approx(evaluate(W.prune_copy(model, 0.2), loader))
    assert mask0[:8] == b"\x89PNG\r\n\x1a\n"

    st = exp.set(sparsity=0.95)
    assert st["layer_sparsity"] == pytest.approx(0.95, abs=0.01)
    assert st["accuracy"] < acc0, "pruning 95% of every layer without fine-tuning must cost accuracy"
    assert exp.accuracy_label.value != label0
    assert exp.images["mask"].value != mask0 and exp.images["histogram"].value != hist0

    st = exp.set(method=W.PRUNING_METHODS[1], scope="features.4", sparsity=0.5)
    assert st["layer"] == "features.4" and "only <code>features.4</code>" in exp.accuracy_label.value
    rows = st["mask"].reshape(st["mask"].shape[0], -1)
    assert int((rows == 0).all(dim=1).sum()) == rows.shape[0] // 2  # whole channels removed


def test_quantization_explorer_updates_error_and_accuracy(model, loader) -> None:
    exp = W.quantization_explorer(model, loader, bits=8)
    assert exp.interactive and set(exp.controls) == {"bits", "scheme"}
    st8 = dict(exp.state)
    assert st8["accuracy"] == pytest.approx(st8["fp32_accuracy"], abs=0.02)
    label8, img8 = exp.accuracy_label.value, exp.images["error"].value

    st2 = exp.set(bits=2)
    assert st2["mse"] > 100 * st8["mse"] and st2["sqnr_db"] < st8["sqnr_db"]
    assert exp.accuracy_label.value != label8 and exp.images["error"].value != img8
    assert exp.set(scheme="affine per-channel")["mse"] < st2["mse"]


def test_quantization_explorer_on_a_tensor_has_no_accuracy() -> None:
    exp = W.quantization_explorer(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)), bits=3)
    assert exp.state["accuracy"] is None and "accuracy" not in exp.accuracy_label.value
    assert "SQNR" in exp.accuracy_label.value
    with pytest.raises(W.ExplorerError, match="No control named"):
        exp.set(sparsity=0.5)


def test_explorers_fall_back_to_a_static_plot_without_ipywidgets(model, loader, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    for exp in (W.pruning_explorer(model, loader), W.quantization_explorer(model, loader)):
        assert not exp.interactive and exp.controls == {}
        assert "ipywidgets is not available" in (exp.message or "")
        assert "sweep" in exp.figures
        labels = {line.get_label() for line in exp.figures["sweep"].axes[0].get_lines()}
        expected = W.PRUNING_METHODS if exp.title.startswith("Pruning") else W.QUANT_SCHEMES
        assert set(expected) <= labels, "the static sweep draws one curve per method / scheme"
        html = exp._repr_mimebundle_()["text/html"]
        assert html.count("data:image/png;base64,") == 2
    assert capsys.readouterr().out.count("ipywidgets is not available") == 2


def test_an_error_while_updating_shows_in_the_label(model, loader, monkeypatch) -> None:
    exp = W.pruning_explorer(model, loader)

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory while pruning")

    monkeypatch.setattr(W, "prune_copy", boom)
    exp.set(sparsity=0.3)  # an observer must not raise into ipywidgets, where the error would vanish
    assert "RuntimeError: out of memory while pruning" in exp.accuracy_label.value
