"""Exercise spec for the chapter 8 capstone: ``compress(model, loaders) -> nn.Module``, graded on
measured results (``course_utils.capstone``).

One case per target of the report card (size, speed, accuracy), so credit is per target met.
``run`` (in the student's kernel) calls ``compress`` once per student function — the three
cases share one call through a small cache — and returns the result as a TorchScript archive
(a ``uint8`` tensor). ``compare`` (in the grader's judge) loads the archive and measures the
case's target itself; the test split never enters the student's kernel.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..capstone import (
    BATCH,
    TARGETS,
    archive_accuracy,
    fp32_baselines,
    interleaved_speedup,
    load_archive,
    to_archive,
)
from ..exercise import Exercise

_TARGET_OF_SEED = {0: "size", 1: "speed", 2: "accuracy"}
_MIN_COMPRESSION = 2.0  # the accuracy target earns credit only for a model at least this much smaller
_LAST: list[Any] = []  # [student function, key, (archive, seconds) or the exception it raised]


def _splits(seed: int):
    from ..data import load_digits_dataset

    return load_digits_dataset(seed=seed)


def _stack(ds) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in ds]), torch.stack([y for _, y in ds])


def _capstone_case(seed: int) -> dict:
    from ..training import pretrained

    splits = _splits(0)
    train_x, train_y = _stack(splits.train)
    val_x, val_y = _stack(splits.val)
    return {
        "target": _TARGET_OF_SEED[seed % 3],
        "state": pretrained("course_cnn_quant", progress=False).state_dict(),
        "train_x": train_x,
        "train_y": train_y,
        "val_x": val_x,
        "val_y": val_y,
        "split_seed": 0,
    }


def _fp32(inputs: dict) -> nn.Module:
    from ..models import CourseCNN

    model = CourseCNN(quant_stubs=True)
    model.load_state_dict(inputs["state"])
    return model.eval()


def _loaders(inputs: dict) -> dict[str, torch.utils.data.DataLoader]:
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(inputs["split_seed"])
    train = TensorDataset(inputs["train_x"], inputs["train_y"])
    return {
        "train": DataLoader(train, batch_size=64, shuffle=True, generator=g),
        "val": DataLoader(TensorDataset(inputs["val_x"], inputs["val_y"]), batch_size=256),
    }


def _capstone_run(fn, inputs: dict) -> dict:
    key = (inputs["split_seed"], float(inputs["state"]["features.0.weight"].sum()))
    if not (_LAST and _LAST[0] is fn and _LAST[1] == key):
        t0 = time.perf_counter()
        try:
            model = fn(_fp32(inputs), _loaders(inputs))
            if not isinstance(model, nn.Module):
                raise TypeError(f"compress must return an nn.Module, got {type(model).__name__}.")
            seconds = time.perf_counter() - t0
            try:
                archive = to_archive(model, inputs["val_x"][:BATCH].contiguous())
            except Exception as err:
                raise TypeError(
                    f"the returned model cannot be traced with torch.jit.trace ({type(err).__name__}: "
                    f"{str(err)[:300]}). Keep forward a plain tensor → tensor function."
                ) from None
            result: Any = (archive, seconds)
        except Exception as err:
            result = err
        _LAST[:] = [fn, key, result]
    result = _LAST[2]
    if isinstance(result, Exception):
        raise result
    archive, seconds = result
    return {"archive": archive, "seconds": seconds}


def _capstone_reference(inputs: dict) -> dict:
    test_x, test_y = _stack(_splits(inputs["split_seed"]).test)
    fp32 = _fp32(inputs)
    return {
        "fp32 archive bytes": to_archive(fp32, test_x[:BATCH].contiguous()).numel(),
        "fp32 accuracy": archive_accuracy(fp32, test_x, test_y),
        "test_x": test_x,
        "test_y": test_y,
    }


def _measure_speed(model: nn.Module, inputs: dict, x: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Interleaved speed-up; near the target, two more measurements and the median of three."""
    base = fp32_baselines(_fp32(inputs), x)
    speedup, ms = interleaved_speedup(model, base, x)
    if abs(speedup / TARGETS["speed"] - 1) < 0.2:
        more = [interleaved_speedup(model, base, x)[0] for _ in range(2)]
        speedup = sorted([speedup, *more])[1]
    return speedup, ms


def _capstone_compare(got: Any, expected: dict, inputs: dict) -> str:
    if not isinstance(got, dict) or not isinstance(got.get("archive"), torch.Tensor):
        raise AssertionError("the grader expected the TorchScript archive of your model; nothing came back.")
    target = inputs["target"]
    try:
        model = load_archive(got["archive"])
    except Exception as err:
        raise AssertionError(
            f"the archive of your model does not load ({type(err).__name__}: {err})."
        ) from None
    x = expected["test_x"][:BATCH].contiguous()
    try:
        with torch.inference_mode():
            out = model(x)
    except Exception as err:
        raise AssertionError(
            f"your model fails on a batch of test images ({type(err).__name__}: {err})."
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, 10):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise AssertionError(
            f"your model must map {tuple(x.shape)} images to ({BATCH}, 10) logits, got {shape}."
        )
    if target == "size":
        ratio = expected["fp32 archive bytes"] / got["archive"].numel()
        msg = (
            f"size: {ratio:.2f}× smaller than fp32 ({expected['fp32 archive bytes'] / 1e3:.0f} kB → "
            f"{got['archive'].numel() / 1e3:.0f} kB as TorchScript archives; target ≥ {TARGETS['size']:g}×)"
        )
        if ratio < TARGETS["size"]:
            raise AssertionError(
                f"{msg}. Most bytes are in classifier.1 (Linear 1024→128): int8 weights are 4× smaller "
                "than fp32, and removing conv channels shrinks that Linear too."
            )
        return msg
    if target == "speed":
        speedup, ms = _measure_speed(model, inputs, x)
        times = ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
        msg = (
            f"speed: {speedup:.2f}× faster than the best fp32 (batch {BATCH}, 1 thread, interleaved "
            f"medians {times}; target ≥ {TARGETS['speed']:g}×)"
        )
        if speedup < TARGETS["speed"]:
            raise AssertionError(
                f"{msg}. Zeros in a dense tensor save no time: remove whole channels "
                "(course_utils.pruning.remove_channels), run the convs in channels_last, quantize."
            )
        return msg
    ratio = expected["fp32 archive bytes"] / got["archive"].numel()
    if ratio < _MIN_COMPRESSION:
        raise AssertionError(
            f"accuracy: counts only for a compressed model (at least {_MIN_COMPRESSION:g}× smaller), and yours "
            f"is {ratio:.2f}× smaller than fp32: returning the model unchanged keeps its accuracy trivially."
        )
    acc = archive_accuracy(model, expected["test_x"], expected["test_y"])
    drop = 100 * (expected["fp32 accuracy"] - acc)
    msg = (
        f"accuracy: {100 * acc:.2f} % on the test split vs fp32 {100 * expected['fp32 accuracy']:.2f} % "
        f"(drop {drop:+.2f} pt on {len(expected['test_y'])} images; target ≤ {TARGETS['accuracy']:g} pt)"
    )
    if drop > TARGETS["accuracy"] + 1e-9:
        raise AssertionError(
            f"{msg}. Fine-tune after pruning (a few epochs on loaders['train']) and calibrate "
            "or fine-tune the quantized model (QAT); check it on loaders['val']."
        )
    return msg


EXERCISES = [
    Exercise(
        id="8.3",
        title="compress(model, loaders): the capstone report card",
        target="compress",
        points=21,
        make_case=_capstone_case,
        run=_capstone_run,
        reference=_capstone_reference,
        compare=_capstone_compare,
        public_seeds=(0, 1, 2),
        hidden_seeds=(),
        timeout=300.0,
        hint="prune whole channels (remove_channels), fine-tune on loaders['train'], quantize "
        "(static_ptq / QAT for the convs, or dynamic_ptq for the Linear layers that hold most bytes), "
        "and check yourself with course_utils.capstone.report_card before submitting.",
    ),
]
