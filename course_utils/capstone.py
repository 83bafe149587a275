"""The capstone report card: a compressed model measured against the fp32 course CNN.

A submission is a TorchScript archive (``torch.jit.trace`` + ``torch.jit.save``, as a ``uint8``
tensor so it survives ``torch.load(weights_only=True)``). The grader, never the student's code,
measures three targets:

- **size**: ``bytes(fp32 archive) / bytes(submission archive) ≥ 4``;
- **speed**: ``t(best fp32) / t(submission) ≥ 2`` at batch 64 and 1 thread, where the best fp32
  is the faster of the fp32 model in ``channels_last`` run eagerly or as a TorchScript archive.
  On a shared machine absolute times drift with the load, so the models run *interleaved*:
  each round times every model once; the speed-up is the median over rounds of the per-round
  ratio, so a slow period slows both sides of a ratio;
- **accuracy**: ``acc(fp32) − acc(submission) ≤ 1`` percentage point on the test split.

TorchScript is deprecated in favour of ``torch.export`` (PyTorch 2.14 warns, still works); it is
used here because an archive runs without the student's Python code, eager int8 modules
included. Its ``FutureWarning`` s are filtered by message inside these helpers only.
"""

from __future__ import annotations

import copy
import io
import statistics
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .timing import interleaved_rounds, median_ms

__all__ = [
    "TARGETS",
    "BATCH",
    "ReportCard",
    "to_archive",
    "load_archive",
    "archive_accuracy",
    "interleaved_speedup",
    "report_card",
]

#: The report card a capstone submission must meet (size ×, speed ×, max accuracy drop in points).
TARGETS: dict[str, float] = {"size": 4.0, "speed": 2.0, "accuracy": 1.0}
#: Batch size of the latency measurement.
BATCH = 64


@contextmanager
def _quiet_jit():
    """Hide only the "`torch.jit.…` is deprecated" FutureWarnings of trace/save/load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def to_archive(model: nn.Module, example_input: torch.Tensor) -> torch.Tensor:
    """``torch.jit.trace(model.eval(), example_input)`` saved with ``torch.jit.save``: the bytes as uint8."""
    model = model.eval()
    buf = io.BytesIO()
    with torch.no_grad(), _quiet_jit():
        traced = torch.jit.trace(model, example_input, check_trace=False)
        torch.jit.save(traced, buf)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def load_archive(archive: torch.Tensor) -> torch.jit.ScriptModule:
    """The TorchScript module stored in a uint8 tensor made by :func:`to_archive` (eval mode)."""
    if not isinstance(archive, torch.Tensor) or archive.dtype != torch.uint8 or archive.dim() != 1:
        raise TypeError("a model archive is a 1-D uint8 tensor (the bytes of torch.jit.save).")
    with _quiet_jit():
        return torch.jit.load(io.BytesIO(archive.numpy().tobytes()), map_location="cpu").eval()


@torch.inference_mode()
def archive_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy (fraction) of ``model`` on ``(x, y)`` in batches of ``batch``."""
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / len(y)


def interleaved_speedup(
    candidate: nn.Module,
    baselines: dict[str, tuple[nn.Module, torch.Tensor]],
    x: torch.Tensor,
    rounds: int = 21,
    inner: int = 3,
    warmup: int = 3,
) -> tuple[float, dict[str, float]]:
    """``(speed-up, median ms per model)``: median over rounds of ``min(baseline) / candidate``.

    Each round times ``inner`` calls of every model in turn on one thread, in a rotated order
    (:func:`~course_utils.timing.interleaved_rounds`); baseline ``b`` runs on its own input,
    e.g. ``x`` in ``channels_last``. A per-round ratio cancels load drift.
    """
    models = {"submission": (candidate, x), **baselines}
    fns = {k: (lambda m=m, inp=inp: m(inp)) for k, (m, inp) in models.items()}
    times = interleaved_rounds(fns, threads=1, warmup=warmup, rounds=rounds, number=inner)
    ratios = [min(times[b][r] for b in baselines) / times["submission"][r] for r in range(rounds)]
    return statistics.median(ratios), median_ms(times)


@dataclass(frozen=True)
class ReportCard:
    """Measured size ratio, speed-up and accuracies of a submission against the fp32 model."""

    size_ratio: float
    fp32_bytes: int
    bytes: int
    speedup: float | None
    ms: dict[str, float]
    fp32_accuracy: float
    accuracy: float

    @property
    def accuracy_drop(self) -> float:
        """fp32 accuracy minus submission accuracy, in percentage points."""
        return 100 * (self.fp32_accuracy - self.accuracy)

    def passed(self) -> dict[str, bool]:
        """Which of :data:`TARGETS` the submission meets."""
        return {
            "size": self.size_ratio >= TARGETS["size"],
            "speed": self.speedup is not None and self.speedup >= TARGETS["speed"],
            "accuracy": self.accuracy_drop <= TARGETS["accuracy"] + 1e-9,
        }

    def __str__(self) -> str:
        ok = {k: "✓" if v else "✗" for k, v in self.passed().items()}
        speed = "not measured" if self.speedup is None else f"{self.speedup:.2f}× faster"
        ms = ", ".join(f"{k} {v:.2f} ms" for k, v in self.ms.items())
        return (
            f"{ok['size']} size     {self.size_ratio:.2f}× smaller ({self.fp32_bytes / 1e3:.0f} kB → "
            f"{self.bytes / 1e3:.0f} kB; target ≥ {TARGETS['size']:g}×)\n"
            f"{ok['speed']} speed    {speed} than the best fp32 (batch {BATCH}, 1 thread, interleaved "
            f"medians: {ms}; target ≥ {TARGETS['speed']:g}×)\n"
            f"{ok['accuracy']} accuracy {100 * self.accuracy:.2f} % vs fp32 {100 * self.fp32_accuracy:.2f} % "
            f"(drop {self.accuracy_drop:+.2f} pt; target ≤ {TARGETS['accuracy']:g} pt)"
        )


def fp32_baselines(fp32: nn.Module, x: torch.Tensor) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """The fp32 model in ``channels_last``, eager and as a TorchScript archive, with its input."""
    cl = copy.deepcopy(fp32).eval().to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    return {
        "fp32 channels_last": (cl, x_cl),
        "fp32 channels_last TorchScript": (load_archive(to_archive(cl, x_cl)), x_cl),
    }


def report_card(
    submission: nn.Module | torch.Tensor,
    fp32: nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    speed: bool = True,
    rounds: int = 21,
) -> ReportCard:
    """Measure a submission (a model, traced here, or an archive from :func:`to_archive`)."""
    x = test_x[:BATCH].contiguous()
    archive = submission if isinstance(submission, torch.Tensor) else to_archive(submission, x)
    fp32 = copy.deepcopy(fp32).eval()
    fp32_archive = to_archive(fp32, x)
    model = load_archive(archive)
    speedup, ms = None, {}
    if speed:
        speedup, ms = interleaved_speedup(model, fp32_baselines(fp32, x), x, rounds=rounds)
    return ReportCard(
        size_ratio=fp32_archive.numel() / archive.numel(),
        fp32_bytes=fp32_archive.numel(),
        bytes=archive.numel(),
        speedup=speedup,
        ms=ms,
        fp32_accuracy=archive_accuracy(fp32, test_x, test_y),
        accuracy=archive_accuracy(model, test_x, test_y),
    )
