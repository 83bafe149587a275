"""Interactive explorers for the lessons: prune or fake-quantize a trained model with a slider.

``pruning_explorer(model, loader)``: a sparsity slider and a method dropdown (L1 unstructured,
Ln structured, random unstructured). Each change prunes a *copy* of the model with
``torch.nn.utils.prune`` and shows its accuracy, the mask of one layer and its weight histogram.

``quantization_explorer(model_or_tensor, loader)``: a bit-width slider and a scheme dropdown
(affine/symmetric × per-tensor/per-channel). Each change fake-quantizes the weights,
``ŵ = (clamp(round(w/s) + z, q_min, q_max) − z)·s``, with ``torch.fake_quantize_per_tensor_affine``
or ``torch.fake_quantize_per_channel_affine``, and shows the error histogram ``ŵ − w`` and accuracy.

Both return an :class:`Explorer`: ``.controls`` (the widgets), ``.accuracy_label``, ``.images``
(PNG ``ipywidgets.Image`` outputs) and ``.state`` (last measured values), so tests can drive them
headless. Without ipywidgets they show a static plot (a sweep over the same settings) and a message.
"""

from __future__ import annotations

import html
import io
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .explorer_models import (
    ALL_LAYERS,
    PRUNING_METHODS,
    QUANT_SCHEMES,
    ExplorerError,
    fake_quantize,
    fake_quantize_copy,
    prunable_layers,
    prune_copy,
    quant_params,
)
from .plotting import plot_mask, plot_quantization_error, plot_sparsity_curve, plot_weight_histogram

__all__ = [
    "Explorer",
    "ALL_LAYERS",
    "PRUNING_METHODS",
    "QUANT_SCHEMES",
    "prunable_layers",
    "prune_copy",
    "quant_params",
    "fake_quantize",
    "fake_quantize_copy",
    "pruning_explorer",
    "quantization_explorer",
]

NO_WIDGETS_MESSAGE = (
    "ipywidgets is not available, so this is a static plot of the same sweep. For the interactive "
    "explorer run `pip install 'ipywidgets>=8.1'` in the course environment and restart the kernel."
)


# --- figures ----------------------------------------------------------------------------------


def _figure(width: float = 4.6, height: float = 3.2) -> Any:
    """A matplotlib Figure not registered with pyplot (so notebooks do not display it twice)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def _png(fig: Any) -> bytes:
    """Render ``fig`` to PNG bytes; a pyplot-managed figure is closed so it is not shown twice."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=2 * fig.dpi)  # crisp when the browser scales it down
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return buf.getvalue()


def _mask_figure(name: str, mask: torch.Tensor) -> Any:
    return plot_mask({name: mask}, title="mask (white = kept, black = pruned)")


def _histogram_figure(name: str, dense: torch.Tensor, pruned: torch.Tensor) -> Any:
    return plot_weight_histogram(
        {f"{name} dense": dense, f"{name} pruned": pruned},
        exclude_zeros=True,
        title="weights (zeros excluded)",
    )


def _sweep_figure(
    xs: list[float], curves: dict[str, list[float]], title: str, xlabel: str, ylabel: str
) -> Any:
    fig = _figure(5.5, 3.4)
    ax = fig.add_subplot()
    for label, ys in curves.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# --- the explorer object -----------------------------------------------------------------------


@dataclass
class Explorer:
    """What an explorer returns: its widgets (or, without ipywidgets, a static figure and message).

    ``controls`` maps a name (``"sparsity"``, ``"method"`` / ``"bits"``, ``"scheme"``) to its widget;
    ``accuracy_label`` is an ``ipywidgets.HTML``; ``images`` maps a name to an ``ipywidgets.Image``;
    ``state`` holds the last measured values; ``figures`` the last matplotlib Figures.
    """

    title: str
    controls: dict[str, Any] = field(default_factory=dict)
    accuracy_label: Any = None
    images: dict[str, Any] = field(default_factory=dict)
    widget: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    message: str | None = None

    @property
    def interactive(self) -> bool:
        """True when ipywidgets drove this explorer; False for the static fallback."""
        return self.widget is not None

    def set(self, **values: Any) -> dict[str, Any]:
        """Set control values (as a person moving them would) and return the new ``state``."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ExplorerError(f"No control named {sorted(unknown)}; controls are {sorted(self.controls)}.")
        for name, value in values.items():
            self.controls[name].value = value  # the observer recomputes synchronously
        return self.state

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self.widget is not None:
            return self.widget._repr_mimebundle_(**kwargs)
        import base64

        bundle: dict[str, Any] = {"text/plain": f"{self.title}\n{self.message}"}
        html = [f"<p><b>{self.title}</b> — {self.message}</p>"]
        for fig in self.figures.values():
            html.append(f'<img src="data:image/png;base64,{base64.b64encode(_png(fig)).decode()}"/>')
        bundle["text/html"] = "\n".join(html)
        return bundle


def _import_ipywidgets() -> Any | None:
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _build(
    title: str,
    compute: Callable[..., dict[str, Any]],
    render: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]],
    make_controls: Callable[[Any], dict[str, Any]],
    static: Callable[[], dict[str, Any]],
) -> Explorer:
    """Wire controls → ``compute(**values)`` → ``render(state)`` → label HTML and PNG images."""
    widgets = _import_ipywidgets()
    if widgets is None:
        print(NO_WIDGETS_MESSAGE)
        return Explorer(title=title, figures=static(), message=NO_WIDGETS_MESSAGE)

    controls = make_controls(widgets)
    label = widgets.HTML()
    images: dict[str, Any] = {}
    exp = Explorer(title=title, controls=controls, accuracy_label=label, images=images)

    def update(_change: Any = None) -> None:
        try:
            exp.state = compute(**{k: c.value for k, c in controls.items()})
            text, figs = render(exp.state)
        except Exception as err:  # an observer's exception would vanish into the browser console
            label.value = f"<span style='color:#b00020'>{html.escape(f'{type(err).__name__}: {err}')}</span>"
            if _change is None:
                raise
            return
        label.value = text
        exp.figures = figs
        for name, fig in figs.items():
            if name not in images:
                width = f"{round(80 * fig.get_figwidth())}px"  # 80 px per inch: readable, fits a lab cell
                images[name] = widgets.Image(format="png", layout=widgets.Layout(width=width))
            images[name].value = _png(fig)

    for c in controls.values():
        c.observe(update, names="value")
    update()
    exp.widget = widgets.VBox(
        [
            widgets.HTML(f"<b>{title}</b>"),
            widgets.HBox(list(controls.values())),
            label,
            widgets.HBox(list(images.values())),
        ]
    )
    return exp


def _check_model_and_loader(model: Any, loader: Any, what: str) -> None:
    if not isinstance(model, nn.Module):
        raise ExplorerError(f"{what} needs a trained nn.Module, got {type(model).__name__}.")
    if loader is not None and not isinstance(loader, Iterable):
        raise ExplorerError(f"loader must yield (images, labels) batches, got {type(loader).__name__}.")


def _pick_layer(model: nn.Module, layer: str | None, skip_output_layer: bool) -> str:
    layers = dict(prunable_layers(model, skip_output_layer))
    if not layers:
        raise ExplorerError("The model has no Conv or Linear layer to explore.")
    if layer is None:  # the largest weight matrix is the most telling picture
        return max(layers, key=lambda n: layers[n].weight.numel())
    if layer not in layers:
        raise ExplorerError(f"No prunable layer {layer!r}. Choose one of: {', '.join(layers)}.")
    return layer


def _accuracy(model: nn.Module, loader: Iterable) -> float:
    from .training import evaluate

    return evaluate(model, loader)


# --- pruning explorer --------------------------------------------------------------------------


def pruning_explorer(
    model: nn.Module,
    loader: Iterable,
    layer: str | None = None,
    sparsity: float = 0.5,
    method: str = PRUNING_METHODS[0],
    scope: str = ALL_LAYERS,
    skip_output_layer: bool = True,
    seed: int = 0,
) -> Explorer:
    """Prune a copy of ``model`` at the slider's sparsity with the chosen method, in every prunable
    layer (``scope=ALL_LAYERS``) or in one named layer; show accuracy on ``loader``, the mask of the
    pruned layer (with all layers: ``layer``, default the largest) and its weight histogram."""
    _check_model_and_loader(model, loader, "pruning_explorer")
    if loader is None:
        raise ExplorerError("pruning_explorer needs a loader to measure accuracy, e.g. loaders['test'].")
    layer = _pick_layer(model, layer, skip_output_layer)
    names = [n for n, _ in prunable_layers(model, skip_output_layer)]
    scopes = [ALL_LAYERS, *names]
    if scope not in scopes:
        raise ExplorerError(f"Unknown scope {scope!r}. Choose one of: {', '.join(scopes)}.")
    dense_acc = _accuracy(model, loader)
    modules = dict(model.named_modules())

    def compute(sparsity: float, method: str, scope: str) -> dict[str, Any]:
        shown = layer if scope == ALL_LAYERS else scope
        pruned = prune_copy(
            model, sparsity, method, seed, None if scope == ALL_LAYERS else [scope], skip_output_layer
        )
        mod = dict(pruned.named_modules())[shown]
        mask = mod.weight_mask.detach().clone()
        return {
            "sparsity": float(sparsity),
            "method": method,
            "scope": scope,
            "accuracy": _accuracy(pruned, loader),
            "dense_accuracy": dense_acc,
            "layer": shown,
            "layer_sparsity": float((mask == 0).float().mean()),
            "mask": mask,
            "weight": mod.weight.detach().clone(),
        }

    def render(st: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        shown = st["layer"]
        where = "all prunable layers" if st["scope"] == ALL_LAYERS else f"only <code>{shown}</code>"
        text = (
            f"accuracy <b>{st['accuracy']:.1%}</b> (dense {st['dense_accuracy']:.1%}) · "
            f"{st['method']} in {where} · <code>{shown}</code> sparsity {st['layer_sparsity']:.1%}"
        )
        figs = {
            "mask": _mask_figure(shown, st["mask"]),
            "histogram": _histogram_figure(shown, modules[shown].weight, st["weight"]),
        }
        return text, figs

    def make_controls(w: Any) -> dict[str, Any]:
        return {
            "sparsity": w.FloatSlider(
                value=sparsity,
                min=0.0,
                max=0.99,
                step=0.05,
                description="sparsity",
                continuous_update=False,
                readout_format=".0%",
            ),
            "method": w.Dropdown(
                options=list(PRUNING_METHODS),
                value=method,
                description="method",
                layout=w.Layout(width="330px"),
            ),
            "scope": w.Dropdown(
                options=scopes, value=scope, description="prune", layout=w.Layout(width="260px")
            ),
        }

    def static() -> dict[str, Any]:
        amounts = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95]
        curves = {m: (amounts, [compute(a, m, scope)["accuracy"] for a in amounts]) for m in PRUNING_METHODS}
        title = f"Accuracy vs sparsity ({scope}, no fine-tuning)"
        return {
            "sweep": plot_sparsity_curve(curves, baseline=dense_acc, title=title),
            "mask": render(compute(sparsity, method, scope))[1]["mask"],
        }

    return _build("Pruning explorer", compute, render, make_controls, static)


# --- quantization explorer ---------------------------------------------------------------------


def quantization_explorer(
    model_or_tensor: nn.Module | torch.Tensor,
    loader: Iterable | None = None,
    layer: str | None = None,
    bits: int = 4,
    scheme: str = QUANT_SCHEMES[0],
) -> Explorer:
    """Fake-quantize the weights of a model (all Conv/Linear; accuracy on ``loader``) or a tensor at
    the slider's bit width and scheme; show the error ``ŵ − w`` histogram of ``layer`` (or the tensor)."""
    if isinstance(model_or_tensor, torch.Tensor):
        model, weight, name = None, model_or_tensor.detach().float(), "tensor"
        if weight.numel() == 0:
            raise ExplorerError("quantization_explorer got an empty tensor.")
    else:
        _check_model_and_loader(model_or_tensor, loader, "quantization_explorer")
        model = model_or_tensor
        name = _pick_layer(model, layer, skip_output_layer=False)
        weight = dict(model.named_modules())[name].weight.detach().float().clone()
    if scheme not in QUANT_SCHEMES:
        raise ExplorerError(f"Unknown scheme {scheme!r}. Choose one of: {', '.join(QUANT_SCHEMES)}.")
    fp32_acc = _accuracy(model, loader) if model is not None and loader is not None else None

    def compute(bits: int, scheme: str) -> dict[str, Any]:
        wq = fake_quantize(weight, bits, scheme)
        err = wq - weight
        # per-tensor: the error bound ±s/2 is one number to draw; per-channel has one per row
        per_tensor_scale = quant_params(weight, bits, scheme.startswith("symmetric"), False)[0]
        scale = None if scheme.endswith("per-channel") else float(per_tensor_scale)
        mse = float(err.pow(2).mean())
        sqnr = 10 * math.log10(float(weight.pow(2).mean()) / mse) if mse > 0 else math.inf
        acc = None
        if model is not None and loader is not None:
            acc = _accuracy(fake_quantize_copy(model, bits, scheme), loader)
        return {
            "bits": int(bits),
            "scheme": scheme,
            "layer": name,
            "mse": mse,
            "sqnr_db": sqnr,
            "accuracy": acc,
            "fp32_accuracy": fp32_acc,
            "error": err,
            "dequantized": wq,
            "scale": scale,
        }

    def render(st: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        parts = []
        if st["accuracy"] is not None:
            parts.append(
                f"accuracy <b>{st['accuracy']:.1%}</b> (fp32 {st['fp32_accuracy']:.1%}, weights only)"
            )
        parts.append(f"<code>{name}</code> SQNR {st['sqnr_db']:.1f} dB · MSE {st['mse']:.2e}")
        parts.append(f"{st['bits']}-bit {st['scheme']}")
        fig = plot_quantization_error(
            weight, st["dequantized"], scale=st["scale"], title=f"{name}: {st['bits']}-bit {st['scheme']}"
        )
        return " · ".join(parts), {"error": fig}

    def make_controls(w: Any) -> dict[str, Any]:
        return {
            "bits": w.IntSlider(
                value=bits, min=2, max=8, step=1, description="bits", continuous_update=False
            ),
            "scheme": w.Dropdown(options=list(QUANT_SCHEMES), value=scheme, description="scheme"),
        }

    def static() -> dict[str, Any]:
        widths = list(range(2, 9))
        key = "accuracy" if fp32_acc is not None else "sqnr_db"
        scale = 100 if key == "accuracy" else 1
        curves = {s: [scale * compute(b, s)[key] for b in widths] for s in QUANT_SCHEMES}
        ylabel = "accuracy (%)" if key == "accuracy" else f"SQNR of {name} (dB)"
        return {
            "sweep": _sweep_figure(widths, curves, f"{ylabel} vs bit width", "bits", ylabel),
            "error": render(compute(bits, scheme))[1]["error"],
        }

    return _build("Quantization explorer", compute, render, make_controls, static)
