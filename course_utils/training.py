"""Seeded training and evaluation, and cached pretrained course models."""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
import pickle
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = [
    "seed_everything",
    "train",
    "evaluate",
    "History",
    "RECIPES",
    "Recipe",
    "pretrained",
    "cache_dir",
]


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class History:
    """Per-epoch training loss and validation accuracy (fraction in [0, 1])."""

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of ``model`` on ``loader`` as a fraction: correct / total."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(dim=1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate() got an empty loader.")
    return correct / total


def train(
    model: nn.Module,
    loaders: dict[str, DataLoader],
    epochs: int = 8,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device = "cpu",
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> History:
    """Train with ``loss_fn(model, x, y)`` (default: cross-entropy of ``model(x)`` and ``y``),
    Adam(lr) unless ``optimizer`` is given.

    ``loaders`` needs ``"train"`` and, for the per-epoch accuracy, ``"val"``.
    ``on_epoch_end(epoch, model)`` runs after each epoch (e.g. to freeze observers in QAT).
    """
    from tqdm.auto import tqdm

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}.")
    model.to(device)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    if loss_fn is None:
        ce = nn.CrossEntropyLoss()

        def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return ce(m(x), y)

    history = History()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, n = 0.0, 0
        for x, y in loaders["train"]:
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            loss.backward()
            opt.step()
            total += loss.item() * y.numel()
            n += y.numel()
        history.train_loss.append(total / max(n, 1))
        if "val" in loaders:
            history.val_accuracy.append(evaluate(model, loaders["val"], device))
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", val_acc=f"{history.val_accuracy[-1]:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
    model.eval()
    return history


@dataclass(frozen=True)
class Recipe:
    """How a pretrained course model is made: model name and kwargs, data, epochs, seed."""

    model: str
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 64
    image_size: int = 16
    seed: int = 0
    model_kwargs: tuple[tuple[str, object], ...] = ()
    dataset: str = "digits"  # or "mnist5k" (data.load_mnist5k)


RECIPES: dict[str, Recipe] = {
    "course_cnn": Recipe("course_cnn"),
    "course_cnn_quant": Recipe("course_cnn_quant"),
    # measured (seeds 0-3, digits test set): LeNet-5 98.1-98.9 %, MLP 97.5-98.3 %
    "lenet5": Recipe("lenet5", epochs=30, lr=2e-3, batch_size=32),
    "mlp": Recipe("mlp", epochs=20, batch_size=32),
    # chapter 10 (28×28 MNIST-5k): 96.2 % on its 1,000 test images after 4 epochs
    "resnet_mini": Recipe("resnet_mini", epochs=4, lr=2e-3, image_size=28, dataset="mnist5k"),
}


def cache_dir() -> Path:
    """Where checkpoints are cached: ``$COURSE_CACHE_DIR`` or ``~/.cache/compression-course``."""
    env = os.environ.get("COURSE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compression-course"


def _recipe_key(name: str, recipe: Recipe) -> str:
    """Hash of the recipe, the code that trains it, and the torch version."""
    from . import data, models

    h = hashlib.sha256()
    h.update(repr(recipe).encode())
    for mod in (data, models):
        h.update(inspect.getsource(mod).encode())
    h.update(inspect.getsource(train).encode())
    h.update(torch.__version__.split("+")[0].encode())
    return f"{name}-{h.hexdigest()[:12]}"


def load_cached(model: nn.Module, path: Path) -> bool:
    """Load ``path``'s state_dict into ``model``; False when the file is missing, truncated or
    foreign (the caller then trains and :func:`save_cached` overwrites it)."""
    if not path.exists():
        return False
    try:
        model.load_state_dict(torch.load(path, weights_only=True))
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError):
        return False
    return True


def save_cached(model: nn.Module, path: Path) -> None:
    """Write ``model``'s state_dict to ``path`` atomically (temporary file + ``os.replace``), so a
    lesson running in parallel never reads a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def pretrained(name: str, progress: bool = True) -> nn.Module:
    """A trained course model (eval mode), trained once and then loaded from the cache.

    The cache file name holds a hash of the recipe and of the data/model/training code,
    so a change to any of them retrains. Returns a fresh copy on every call.
    """
    from .data import load_digits_dataset, load_mnist5k
    from .models import build_model

    if name not in RECIPES:
        raise ValueError(f"No pretrained recipe {name!r}. Choose one of: {', '.join(RECIPES)}.")
    recipe = RECIPES[name]
    path = cache_dir() / f"{_recipe_key(name, recipe)}.pt"
    model = build_model(recipe.model, image_size=recipe.image_size, **dict(recipe.model_kwargs))
    if load_cached(model, path):
        return model.eval()
    seed_everything(recipe.seed)
    model = build_model(recipe.model, image_size=recipe.image_size, **dict(recipe.model_kwargs))
    load = load_mnist5k if recipe.dataset == "mnist5k" else load_digits_dataset
    splits = load(image_size=recipe.image_size, seed=recipe.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count: pin it so every machine gets one model
    try:
        train(
            model,
            splits.loaders(recipe.batch_size, seed=recipe.seed),
            epochs=recipe.epochs,
            lr=recipe.lr,
            progress=progress,
            desc=f"pretraining {name} (cached afterwards)",
        )
    finally:
        torch.set_num_threads(threads)
    save_cached(model, path)
    return copy.deepcopy(model).eval()
