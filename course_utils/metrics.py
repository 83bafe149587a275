"""Measure a model: sparsity, parameter counts, size on disk, FLOPs, and a comparison table.

Latency (:func:`measure_latency`, from ``timing.py``) and accuracy with its noise
(:class:`Accuracy`, :func:`beyond_noise` …, from ``uncertainty.py``) are re-exported here.

Every count is over *parameters* (never buffers such as BatchNorm running statistics or
pruning masks) and is *effective*:

* a pruned-but-not-removed module (``torch.nn.utils.prune``) holds ``weight_orig`` and the
  buffer ``weight_mask``; it is counted as the tensor the forward pass uses,
  ``weight_orig * weight_mask``; likewise a ``torch.nn.utils.parametrize``-d weight counts as
  the computed ``module.weight``, not its ``original``;
* eager-quantized modules (``torch.ao.nn.quantized.Conv2d`` / ``Linear``, dynamic ``Linear``)
  keep packed weights and have no ``parameters()``; they are counted through ``weight()`` and
  ``bias()`` (a quantized entry is zero when its dequantized value is zero);
* torchao tensor subclasses are counted through ``dequantize()``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from html import escape

import torch
from torch import nn
from torch.nn.utils import parametrize

from .timing import Latency, _fmt_ms, as_args, measure_latency
from .uncertainty import Accuracy, accuracy_se, beyond_noise, mean_sd, measure_accuracy

__all__ = [
    "sparsity",
    "layer_sparsity",
    "effective_parameters",
    "count_parameters",
    "count_nonzero_parameters",
    "model_size_bytes",
    "count_flops",
    "Latency",
    "measure_latency",
    "ComparisonRow",
    "ComparisonTable",
    "compare",
    "Accuracy",
    "accuracy_se",
    "measure_accuracy",
    "mean_sd",
    "beyond_noise",
]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A plain float view of ``t``: dequantized for quantized tensors and torchao subclasses."""
    t = t.detach()
    if t.is_quantized:
        return t.dequantize()
    if type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "dequantize"):
        return t.dequantize()
    return t


def _module_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The effective parameter tensors held directly by ``module`` (not its children)."""
    seen: set[str] = set()
    if parametrize.is_parametrized(module):  # e.g. a mask registered with register_parametrization
        for pname in module.parametrizations:
            seen.add(pname)
            yield pname, getattr(module, pname).detach()
    for pname, p in module.named_parameters(recurse=False):
        if pname.endswith("_orig"):
            base = pname[: -len("_orig")]
            mask = getattr(module, f"{base}_mask", None)
            if isinstance(mask, torch.Tensor):  # pruned with torch.nn.utils.prune, not yet removed
                seen.add(base)
                yield base, p.detach() * mask
                continue
        seen.add(pname)
        yield pname, p
    # eager-quantized modules: packed weights, exposed through weight() / bias() methods
    for attr in ("weight", "bias"):
        fn = getattr(type(module), attr, None)
        if attr in seen or not callable(fn) or isinstance(fn, property):
            continue
        try:
            t = getattr(module, attr)()
        except Exception:  # a method with another meaning; not a packed weight
            continue
        if isinstance(t, torch.Tensor):
            yield attr, t


def effective_parameters(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every effective parameter of ``model``, each tensor once.

    Names are like ``named_parameters()`` but a pruned ``weight_orig`` is reported as
    ``weight`` (= ``weight_orig * weight_mask``) and quantized modules report ``weight`` /
    ``bias`` from their packed parameters.
    """
    seen: set[int] = set()
    alive: list[torch.Tensor] = []  # keep computed tensors alive so that their id() is not reused
    for mname, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList) or ".parametrizations." in f".{mname}.":
            continue  # `original` tensors: counted through the parametrized module above
        for pname, t in _module_tensors(module):
            if id(t) in seen:  # a parameter shared between modules (tied weights)
                continue
            seen.add(id(t))
            alive.append(t)
            yield (f"{mname}.{pname}" if mname else pname), t


def _has_packed_weights(module: nn.Module) -> bool:
    """True for eager-quantized modules whose weights are packed behind a ``weight()`` method."""
    fn = getattr(type(module), "weight", None)
    return callable(fn) and not isinstance(fn, property)


def _zeros(t: torch.Tensor) -> int:
    return int((_plain(t) == 0).sum().item())


def sparsity(model_or_tensor: nn.Module | torch.Tensor) -> float:
    """Fraction of zero entries: ``#(w == 0) / #w`` over a tensor or all effective parameters.

    For a model this is the global sparsity over every parameter (weights, biases, BN
    affine), as in YOLOv5's ``sparsity()``; pruned modules count ``weight_orig * weight_mask``.
    """
    if isinstance(model_or_tensor, torch.Tensor):
        n = model_or_tensor.numel()
        if n == 0:
            raise ValueError("sparsity() of an empty tensor is undefined.")
        return _zeros(model_or_tensor) / n
    if not isinstance(model_or_tensor, nn.Module):
        raise TypeError(f"sparsity() takes an nn.Module or a Tensor, got {type(model_or_tensor).__name__}.")
    total = count_parameters(model_or_tensor)
    if total == 0:
        raise ValueError("sparsity() of a model without parameters is undefined.")
    return 1.0 - count_nonzero_parameters(model_or_tensor) / total


def layer_sparsity(model: nn.Module, name: str = "weight") -> dict[str, float]:
    """``{module name: sparsity of its effective weight}`` for each module with a ≥2-D ``weight``.

    That is every Conv/Linear (pruned, quantized or plain); 1-D BatchNorm scales are skipped.
    """
    out: dict[str, float] = {}
    for mname, module in model.named_modules():
        for pname, t in _module_tensors(module):
            if pname == name and t.dim() >= 2:
                out[mname] = sparsity(t)
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of effective parameter entries (works for float, pruned and eager-quantized models)."""
    return sum(t.numel() for _, t in effective_parameters(model))


def count_nonzero_parameters(model: nn.Module) -> int:
    """Number of effective parameter entries that are not zero."""
    return sum(t.numel() - _zeros(t) for _, t in effective_parameters(model))


def model_size_bytes(model: nn.Module) -> int:
    """Size on disk: bytes of ``torch.save(model.state_dict())`` (buffers and masks included)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_flops(model: nn.Module, example_input: torch.Tensor | tuple) -> int | None:
    """FLOPs of one forward pass on ``example_input``, counted by ``FlopCounterMode``.

    A multiply-add counts 2: ``Linear`` = 2·N·in·out, ``Conv2d`` = 2·N·Cout·(Cin/groups)·kh·kw·Hout·Wout
    (bias additions, activations and pooling are not counted). Pruned weights still count
    (dense kernels do the multiplications). Returns ``None`` when the counter cannot count the
    model (e.g. eager-quantized int8 ops, which it does not know).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if any(_has_packed_weights(m) for m in model.modules()):
        return None  # quantized::conv2d / linear are invisible to the counter: a count would be partial
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(*as_args(example_input))
        total = int(counter.get_total_flops())
    except Exception:
        return None
    finally:
        model.train(was_training)
    return total if total > 0 else None


@dataclass(frozen=True)
class ComparisonRow:
    """One model in a :class:`ComparisonTable`; ratios are relative to the baseline row."""

    name: str
    accuracy: float | None
    params: int
    nonzero: int
    sparsity: float
    size_bytes: int
    flops: int | None
    latency: Latency | None
    size_ratio: float  # baseline size / this size: "×" smaller on disk
    speedup: float | None  # baseline latency / this latency


def _fmt_flops(f: int | None) -> str:
    if f is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if f >= scale:
            return f"{f / scale:.2f} {unit}"
    return str(f)


class ComparisonTable:
    """The result of :func:`compare`: prints as aligned text, renders as HTML in Jupyter."""

    COLUMNS = (
        "model",
        "accuracy",
        "params",
        "nonzero",
        "sparsity",
        "size (KB)",
        "FLOPs",
        "latency",
        "size ×",
        "speedup ×",
    )

    def __init__(self, rows: list[ComparisonRow], baseline: str) -> None:
        self.rows = rows
        self.baseline = baseline

    def __getitem__(self, name: str) -> ComparisonRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"No model {name!r} in the table; have: {', '.join(r.name for r in self.rows)}.")

    def __len__(self) -> int:
        return len(self.rows)

    def as_dicts(self) -> list[dict[str, object]]:
        """One dict per row; ``latency_ms`` and ``threads`` flattened from the Latency."""
        out = []
        for row in self.rows:
            d = asdict(row)
            lat = d.pop("latency")
            d["latency_ms"] = lat["median_ms"] if lat else None
            d["threads"] = lat["threads"] if lat else None
            d["batch_size"] = lat["batch_size"] if lat else None
            out.append(d)
        return out

    def _cells(self) -> list[list[str]]:
        cells = []
        for r in self.rows:
            cells.append(
                [
                    r.name,
                    "n/a" if r.accuracy is None else f"{100 * r.accuracy:.2f}%",
                    f"{r.params:,}",
                    f"{r.nonzero:,}",
                    f"{100 * r.sparsity:.1f}%",
                    f"{r.size_bytes / 1024:.1f}",
                    _fmt_flops(r.flops),
                    "n/a" if r.latency is None else _fmt_ms(r.latency.median_ms),
                    f"{r.size_ratio:.2f}",
                    "n/a" if r.speedup is None else f"{r.speedup:.2f}",
                ]
            )
        return cells

    def _footer(self) -> str:
        lat = next((r.latency for r in self.rows if r.latency is not None), None)
        how = f"; latency: median, batch {lat.batch_size}, {lat.threads} thread(s)" if lat else ""
        return f"ratios vs {self.baseline!r} (size × = how many times smaller){how}"

    def __str__(self) -> str:
        cells = [list(self.COLUMNS), *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.COLUMNS))]
        lines = []
        for k, row in enumerate(cells):
            parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(parts).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(self._footer())
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self._cells()
        )
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p><small>{escape(self._footer())}</small></p>"
        )


def compare(
    models: Mapping[str, nn.Module],
    loader: Iterable | None,
    example_input: torch.Tensor | tuple,
    baseline: str | None = None,
    threads: int = 1,
    min_run_time: float = 0.5,
    latency: bool = True,
    progress: bool = True,
) -> ComparisonTable:
    """Measure each model (accuracy on ``loader``, counts, size, FLOPs, latency) side by side.

    ``size ×`` = baseline bytes / model bytes and ``speedup ×`` = baseline latency / model
    latency, with the first model as baseline unless ``baseline`` names another. Pass
    ``loader=None`` to skip accuracy and ``latency=False`` to skip timing.
    """
    from tqdm.auto import tqdm

    from .training import evaluate

    if not models:
        raise ValueError("compare() needs at least one model, e.g. compare({'fp32': model}, ...).")
    names = list(models)
    baseline = names[0] if baseline is None else baseline
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not one of the models: {', '.join(names)}.")
    measured = {}
    for name, model in tqdm(
        models.items(), desc="compare", total=len(models), disable=not progress, leave=False
    ):
        measured[name] = dict(
            accuracy=None if loader is None else evaluate(model, loader),
            params=count_parameters(model),
            nonzero=count_nonzero_parameters(model),
            size_bytes=model_size_bytes(model),
            flops=count_flops(model, example_input),
            latency=measure_latency(model, example_input, threads, min_run_time) if latency else None,
        )
    base = measured[baseline]
    rows = []
    for name, m in measured.items():
        lat, base_lat = m["latency"], base["latency"]
        rows.append(
            ComparisonRow(
                name=name,
                sparsity=1.0 - m["nonzero"] / m["params"] if m["params"] else 0.0,
                size_ratio=base["size_bytes"] / m["size_bytes"],
                speedup=base_lat.median_ms / lat.median_ms if lat and base_lat else None,
                **m,
            )
        )
    return ComparisonTable(rows, baseline)
