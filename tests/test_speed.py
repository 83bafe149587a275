"""course_utils.speed: interleaved timing, ratios against the best fp32, the decomposition rows.

Timing is never asserted as a number: the models here sleep, so which one is faster is known.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from course_utils import speed
from course_utils.models import CourseCNN

pytestmark = pytest.mark.usefixtures("one_thread")


class Sleep(nn.Module):
    """Takes ``seconds`` per call and records the order of calls."""

    def __init__(self, seconds: float, log: list[str] | None = None, name: str = "") -> None:
        super().__init__()
        self.seconds, self.log, self.name = seconds, log, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log is not None:
            self.log.append(self.name)
        time.sleep(self.seconds)
        return x


X = torch.zeros(4, 1, 16, 16)


def test_ratios_are_against_the_fastest_fp32_not_the_first_row() -> None:
    cands = [
        speed.Candidate("slow fp32", Sleep(0.036), "baseline as trained"),
        speed.Candidate("fast fp32", Sleep(0.012), "better layout"),
        speed.Candidate("int8", Sleep(0.004), "quantized", family="int8"),
        speed.Candidate("missing", None, "not available: no compiler", family="int8"),
    ]
    tab = speed.measure_interleaved(cands, X, threads=1, repeats=3, warmup=1, block_s=0.01, progress=False)
    assert tab.best_fp32 == "fast fp32" and tab.batch == 4 and tab.threads == 1 and tab.repeats == 3
    assert tab["fast fp32"].vs_best_fp32 == 1.0
    assert tab.ratio("int8") == pytest.approx(tab["fast fp32"].median_ms / tab["int8"].median_ms)
    assert (
        tab.ratio("int8") > 1.2 and tab.ratio("slow fp32") < 0.8
    )  # sleeps of 4, 12, 36 ms (3× apart: robust to oversleeping on a busy machine)
    assert tab["slow fp32"].vs_first == 1.0 and tab["int8"].vs_first > tab["int8"].vs_best_fp32
    assert all(len(tab[n].samples_ms) == 3 for n in ("slow fp32", "fast fp32", "int8"))
    assert tab["missing"].median_ms is None and tab.ratio("missing") is None
    md = tab.markdown()
    assert "fast fp32 (best fp32)" in md and "not available: no compiler" in md and "| n/a |" in md
    assert "batch 4, 1 thread" in md and "load average" in md and "CPU capability" in md
    assert "faster than the best fp32 (fast fp32), batch 4, 1 thread" in tab.headline("int8")
    assert "slower than the best fp32" in tab.headline("slow fp32")
    assert speed.faster_or_slower(2.0) == "2.00× faster" and speed.faster_or_slower(0.5) == "2.00× slower"
    assert "<table>" in tab._repr_html_() and "slow fp32" in str(tab)


def test_rounds_rotate_the_order_and_threads_are_restored() -> None:
    log: list[str] = []
    cands = [speed.Candidate(n, Sleep(0.0, log, n), "") for n in "abc"]
    before = torch.get_num_threads()
    speed.measure_interleaved(cands, X, threads=2, repeats=3, warmup=0, block_s=1e-9, progress=False)
    assert torch.get_num_threads() == before
    timed = log[-9:]  # after one sizing call per variant: 3 rounds × 3 variants, one call per block
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_compile_failures_are_reported_and_compile_time_is_bounded(monkeypatch) -> None:
    def failing(model: nn.Module, x: torch.Tensor):
        raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found")

    cands = [
        speed.Candidate("eager", Sleep(0.0), ""),
        speed.Candidate("compiled", Sleep(0.0), "inductor", compile=True),
    ]
    monkeypatch.setattr(speed, "_compile", failing)
    tab = speed.measure_interleaved(cands, X, repeats=1, warmup=0, block_s=1e-3, progress=False)
    assert tab["compiled"].median_ms is None and "torch.compile failed here" in tab["compiled"].how
    assert "no C++ compiler found" in tab["compiled"].how and tab.best_fp32 == "eager"

    monkeypatch.setattr(speed, "_compile", lambda model, x: (model, 500.0))  # a slow compile
    cands.append(speed.Candidate("compiled 2", Sleep(0.0), "inductor", compile=True))
    tab = speed.measure_interleaved(
        cands, X, repeats=1, warmup=0, block_s=1e-3, compile_budget_s=100, progress=False
    )
    assert tab["compiled"].setup_s == 500.0 and tab["compiled"].median_ms is not None
    assert tab["compiled 2"].median_ms is None and "budget 100 s" in tab["compiled 2"].how


def test_bad_arguments() -> None:
    one = [speed.Candidate("a", Sleep(0.0), "")]
    for kw in ({"threads": 0}, {"repeats": 0}, {"block_s": 0}):
        with pytest.raises(ValueError):
            speed.measure_interleaved(one, X, progress=False, **kw)
    with pytest.raises(ValueError, match="unique"):
        speed.measure_interleaved(one * 2, X, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        speed.measure_interleaved([], X, progress=False)


def test_cpu_summary_reports_what_torch_reports() -> None:
    info = speed.cpu_summary()
    assert info["capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["quantized_engine"] == torch.backends.quantized.engine and info["note"]
    if info["vnni"] is False:
        assert "no VNNI" in info["note"]


def test_decomposition_builds_every_step_from_the_same_weights(digits) -> None:
    from course_utils.pruning import remove_channels
    from course_utils.quantization import is_quantized

    model = CourseCNN(quant_stubs=True).eval()
    loader = digits.loaders(32)["train"]
    x = digits.example_input(8)
    cands = speed.decomposition(
        model, loader, x, pruned=remove_channels(model, 0.5), compile=False, num_batches=1
    )
    names = [c.name for c in cands]
    assert names[:6] == [
        "fp32 eager NCHW",
        "fp32 BN folded",
        "fp32 BN folded, channels_last",
        "fp32 torch.compile",
        "int8 eager (static PTQ)",
        "int8 PT2E + torch.compile",
    ]
    by = dict(zip(names, cands))
    assert by["fp32 torch.compile"].model is None and "compile=False" in by["fp32 torch.compile"].how
    assert (
        is_quantized(by["int8 eager (static PTQ)"].model) and by["int8 eager (static PTQ)"].family == "int8"
    )
    assert (
        by["fp32 BN folded, channels_last"].channels_last
        and by["50% channels eager NCHW"].family == "50% channels"
    )
    with torch.no_grad():  # folding and layout change no output
        ref = model(x)
        torch.testing.assert_close(by["fp32 BN folded"].model(x), ref, atol=1e-5, rtol=1e-4)
        cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(by["fp32 BN folded, channels_last"].model(cl), ref, atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in by["fp32 BN folded"].model.modules())
