"""Chapter 10 helpers: dependency groups and pruning, the interleaved latency harness, runtimes, the table."""

from __future__ import annotations

import time

import pytest
import torch
from matplotlib.text import Text

from course_utils import deploy, structured
from course_utils.latency import interleaved_ms, speedups
from course_utils.models import ResNetMini
from course_utils.pareto import Variant, format_table, pareto_figure, png


@pytest.fixture(scope="module")
def mini():
    torch.manual_seed(0)
    return ResNetMini(width=8).eval()


def test_prune_channels_shrinks_groups_and_keeps_the_original(mini, one_thread):
    x = torch.randn(1, 1, 28, 28)
    before = {k: v.clone() for k, v in mini.state_dict().items()}
    r = structured.prune_channels(mini, x, 0.5)
    assert r.model.conv1.out_channels == 4 and r.model.fc.out_features == 10  # classes kept
    assert 0.15 < r.params_ratio < 0.4 and 0.15 < r.macs_ratio < 0.4  # ≈ (1/2)²
    assert r.model(x).shape == (1, 10)
    assert all(torch.equal(before[k], v) for k, v in mini.state_dict().items())
    with pytest.raises(ValueError, match="taylor_batches"):
        structured.prune_channels(mini, x, 0.5, "taylor")
    with pytest.raises(ValueError, match="Unknown importance"):
        structured.prune_channels(mini, x, 0.5, "l7")


def test_random_criterion_is_seeded(mini):
    x = torch.randn(1, 1, 28, 28)
    a, b, c = (structured.prune_channels(mini, x, 0.5, "random", seed=s).model for s in (0, 0, 1))
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)


def test_coupled_group_of_a_downsample_and_bad_layer(mini):
    g = structured.coupled_group(mini, "layer2.0.downsample.0", torch.randn(1, 1, 28, 28))
    assert g == {
        "layer2.0.downsample.0": "out",
        "layer2.0.downsample.1": "out",
        "layer2.0.conv2": "out",
        "layer2.0.bn2": "out",
        "layer3.0.conv1": "in",
        "layer3.0.downsample.0": "in",
    }
    with pytest.raises(ValueError, match="not a Conv2d"):
        structured.coupled_group(mini, "fc", torch.randn(1, 1, 28, 28))


def test_interleaved_ms_medians_order_and_threads():
    calls: list[str] = []

    def sleeper(name: str, ms: float):
        def fn():
            calls.append(name)
            time.sleep(ms / 1e3)

        return fn

    torch.set_num_threads(2)
    ms = interleaved_ms(
        {"a": sleeper("a", 2), "b": sleeper("b", 6)}, threads=1, warmup=1, repeats=4, number=1
    )
    assert torch.get_num_threads() == 2
    assert calls[:2] == ["a", "b"] and sorted(calls[2:4]) == ["a", "b"] and len(calls) == 10
    assert 2 <= ms["a"] < 5 and 6 <= ms["b"] < 10
    best, up = speedups({"eager": 10.0, "compiled": 5.0, "int8": 2.0}, ["eager", "compiled"])
    assert best == "compiled" and up == {"eager": 0.5, "compiled": 1.0, "int8": 2.5}


def test_onnxruntime_and_openvino_match_torch(mini, tmp_path):
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref = mini(x)
    path = deploy.export_onnx(mini, x, tmp_path / "m.onnx")
    ort = deploy.onnxruntime_fp32(path, threads=1)
    torch.testing.assert_close(ort.predict(x), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ort.predict(x[:1]), ref[:1], rtol=1e-4, atol=1e-4)  # dynamic batch
    ov, _ = deploy.openvino_fp32(mini, x, tmp_path, threads=1)
    torch.testing.assert_close(ov.predict(x), ref, rtol=1e-4, atol=1e-4)
    assert ort.size_bytes > 4 * sum(p.numel() for p in mini.parameters()) * 0.9


def test_untie_relu_keeps_the_math(mini):
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = mini(x)
        untied = deploy.untie_relu(__import__("copy").deepcopy(mini))
        torch.testing.assert_close(untied(x), ref)
    assert hasattr(untied.layer1[0], "relu_out") and not hasattr(mini.layer1[0], "relu_out")


def test_table_and_pareto_png():
    rows = [
        Variant("fp32", 1000, 2_000_000, 4096, 0.95, 0.007, 4.0, 1.0),
        Variant("int8", 1000, 2_000_000, 1024, 0.949, 0.007, 2.0, 2.0),
        Variant("bad", 1000, 2_000_000, 1024, 0.5, 0.01, 8.0, 0.5),
    ]
    text = format_table(rows, "fp32", batch=8, threads=1, load=(1.0, None))
    assert "2.00×" in text and "95.00 % ± 0.70" in text and "batch 8, 1 thread(s)" in text
    fig = pareto_figure(rows, "t")
    front = fig.axes[0].lines[-1]
    assert list(front.get_xdata()) == [2.0, 4.0]  # int8 then fp32: 'bad' is dominated
    assert png(fig).data[:8] == b"\x89PNG\r\n\x1a\n"


def _conv_bn(kernel: int, padding: int) -> torch.nn.Module:
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, kernel, padding=padding), torch.nn.BatchNorm2d(3)).eval()
    with torch.no_grad():
        m[1].running_mean.normal_()
        m[1].bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    return m


def test_fast_bias_correction_shift_is_a_border_effect():
    torch.manual_seed(0)
    x = 0.1 * torch.randn(16, 2, 8, 8)
    x[:, :, 3:5, 3:5] += 4.0  # content in the middle, background at the borders (like MNIST)
    model = _conv_bn(3, 1)
    (row,), shifted = deploy.fast_bias_correction_shifts(model, x)
    assert row.conv == "0" and row.input_hw == 8 and row.max_abs_shift > 0.01
    with torch.no_grad():  # real inputs' mean output − the output of one constant image of channel means
        const = x.mean((0, 2, 3), keepdim=True).expand(1, 2, 8, 8)
        expected = model(x).mean((0, 2, 3)) - model(const).mean((0, 2, 3))
        delta = shifted[1].bias - model[1].bias
    assert row.applied == (row.magnitude < 2.0)
    torch.testing.assert_close(delta, expected if row.applied else torch.zeros(3))
    assert deploy.fast_bias_correction_shifts(model, x, threshold=1e9)[0][0].applied
    assert not deploy.fast_bias_correction_shifts(model, x, threshold=0.0)[0][0].applied
    (row,), _ = deploy.fast_bias_correction_shifts(_conv_bn(1, 0), x)  # a 1×1 conv has no border
    assert row.max_abs_shift < 1e-5


def _label_boxes(fig):
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    return texts, [Text.get_window_extent(t, renderer) for t in texts]  # the text, not its leader line


def test_pareto_labels_never_overlap_on_a_crowded_plot():
    # 12 variants within a factor 1.6 of latency and 0.3 pt of accuracy, three at the same point
    ms = [1.0, 1.0, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.5, 1.6]
    acc = [0.960, 0.960, 0.960, 0.961, 0.962, 0.960, 0.963, 0.961, 0.960, 0.962, 0.961, 0.963]
    rows = [
        Variant(f"variant number {i} (int8)", 1000, 10**6, 1024 * (1 + i), a, 0.006, m, 1.0)
        for i, (m, a) in enumerate(zip(ms, acc))
    ]
    fig = pareto_figure(rows, "crowded")
    fig.canvas.draw()
    texts, boxes = _label_boxes(fig)
    assert sorted(t.get_text() for t in texts) == sorted(r.name for r in rows)
    frame = fig.axes[0].get_window_extent()
    for i, a in enumerate(boxes):
        assert frame.contains(a.x0, a.y0) and frame.contains(a.x1, a.y1), texts[i].get_text()
        for j in range(i):
            assert not a.overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    for t, r in zip(sorted(texts, key=lambda t: t.get_text()), sorted(rows, key=lambda r: r.name)):
        assert t.xy == (r.ms, 100 * r.acc)  # each label (or its leader line) points at its variant


def test_doctor_reports_the_chapter10_packages(monkeypatch):
    from course_utils import env

    report = env.collect()
    line = dict(report.info)["chapter 10"]
    assert all(d in line for d in env.CHAPTER10_DISTS) and "MISSING" not in line
    real = env._version
    monkeypatch.setattr(env, "_version", lambda d: None if d == "openvino" else real(d))
    assert any(f.startswith("openvino missing: chapter 10 cannot run") for f in env.collect().fixes)
