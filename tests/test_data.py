"""Data: the digits default (split, shapes, normalization, bad args) and torchvision loaders offline."""

from __future__ import annotations

import hashlib
import pickle
import struct
from urllib.error import URLError

import numpy as np
import pytest
import torch

from course_utils.data import (
    DIGITS_MEAN,
    DIGITS_STD,
    DatasetError,
    load_digits_dataset,
    load_torchvision_dataset,
)


def test_digits_split_sizes_are_the_documented_ones(digits):
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1258, 180, 359)
    assert digits.num_classes == 10 and digits.input_shape == (1, 16, 16)


def test_digits_split_is_deterministic_and_seeded(digits):
    again = load_digits_dataset()
    for a, b in ((digits.train, again.train), (digits.test, again.test)):
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    other = load_digits_dataset(seed=1)
    assert not torch.equal(digits.test.tensors[1], other.test.tensors[1])
    # the three splits partition the 1,797 images: no image is in two splits
    rows = [
        tuple(x.flatten().tolist()) for s in (digits.train, digits.val, digits.test) for x in s.tensors[0]
    ]
    assert len(set(rows)) == len(rows) == 1797  # the 1,797 digits images are pairwise distinct


def test_digits_shapes_and_original_resolution(digits):
    x, y = digits.train[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.long
    small = load_digits_dataset(image_size=8)
    assert small.train[0][0].shape == (1, 8, 8) and small.input_shape == (1, 8, 8)
    assert digits.example_input(5).shape == (5, 1, 16, 16)


def test_digits_normalization_on_train(digits):
    x = digits.train.tensors[0]
    print(f"train mean {x.mean():.4f}, std {x.std():.4f}")
    assert abs(x.mean().item()) < 0.05
    assert abs(x.std().item() - 1.0) < 0.05
    # at 8×8 no resize happens, so a raw pixel p in 0..16 must map to (p/16 - mean)/std exactly
    from sklearn.datasets import load_digits

    raw = torch.tensor(load_digits().images, dtype=torch.float32) / 16.0
    values = set(torch.round((raw.unique() - DIGITS_MEAN) / DIGITS_STD, decimals=4).tolist())
    got = set(torch.round(load_digits_dataset(image_size=8).train.tensors[0].unique(), decimals=4).tolist())
    assert got <= values


def test_digits_train_loader_is_shuffled_reproducibly(digits):
    first = next(iter(digits.loaders(batch_size=32, seed=3)["train"]))[1]
    again = next(iter(digits.loaders(batch_size=32, seed=3)["train"]))[1]
    other = next(iter(digits.loaders(batch_size=32, seed=4)["train"]))[1]
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 2}, "image_size must be between 4 and 64 pixels, got 2."),
        ({"val_fraction": 0.5, "test_fraction": 0.6}, "val_fraction and test_fraction must be in (0, 1)"),
        ({"test_fraction": 0.0}, "val_fraction and test_fraction must be in (0, 1)"),
    ],
)
def test_digits_bad_arguments(kwargs, message):
    with pytest.raises(DatasetError) as err:
        load_digits_dataset(**kwargs)
    assert message in str(err.value)


# --- torchvision loaders, offline, on small fake files written by the tests --------------------------


def _idx(path, array: np.ndarray) -> None:
    """Write an IDX (MNIST) file: magic 0x0000 08 ndim, big-endian dims, then uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root, folder: str, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    for name, a in arrays.items():
        _idx(root / folder / "raw" / name, a)
    return arrays


@pytest.mark.parametrize(
    ("name", "folder", "mean", "std"),
    [("mnist", "MNIST", 0.1307, 0.3081), ("fashion-mnist", "FashionMNIST", 0.2860, 0.3530)],
)
def test_mnist_like_loaders_read_fake_files(tmp_path, name, folder, mean, std):
    arrays = _fake_mnist(tmp_path, folder)
    splits = load_torchvision_dataset(name, root=tmp_path, download=False, val_fraction=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 10)
    assert splits.input_shape == (1, 28, 28)
    x, y = splits.test[0]
    assert x.shape == (1, 28, 28) and y == 3
    expected = (torch.tensor(arrays["t10k-images-idx3-ubyte"][0], dtype=torch.float32) / 255 - mean) / std
    torch.testing.assert_close(x[0], expected)
    # the seeded validation split is the same on every call
    again = load_torchvision_dataset(name, root=tmp_path, download=False)
    assert splits.val.indices == again.val.indices


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar10_loader_reads_fake_pickles(tmp_path, monkeypatch):
    """CIFAR-10 checks each file's md5: point the class's file list at the md5s of our fake files."""
    import torchvision

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    train_list = []
    for i in range(1, 6):
        p = base / f"data_batch_{i}"
        p.write_bytes(
            pickle.dumps({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [i] * 4})
        )
        train_list.append([p.name, _md5(p)])
    test = base / "test_batch"
    pixels = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    test.write_bytes(pickle.dumps({"data": pixels, "labels": [7] * 6}))
    meta = base / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", [[test.name, _md5(test)]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(meta)})

    splits = load_torchvision_dataset("cifar10", root=tmp_path, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 6)
    x, y = splits.test[0]
    assert x.shape == (3, 32, 32) and y == 7 and splits.input_shape == (3, 32, 32)
    red = torch.tensor(pixels[0, :1024].reshape(32, 32), dtype=torch.float32) / 255
    torch.testing.assert_close(x[0], (red - 0.4914) / 0.2470)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_without_download_is_one_clear_error(tmp_path, name):
    with pytest.raises(DatasetError) as err:
        load_torchvision_dataset(name, root=tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "the files are not there and download=False" in msg
    assert f"load_torchvision_dataset({name!r}" in msg and "download=True" in msg
    assert "load_digits_dataset()" in msg


def test_failed_download_says_no_network(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as mnist

    def offline(*args, **kwargs):
        raise URLError("no network in this test")

    monkeypatch.setattr(mnist, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError) as err:
        load_torchvision_dataset("mnist", root=tmp_path, download=True)
    assert "the download failed (no network?)" in str(err.value)
    assert "no network in this test" in str(err.value)


def test_unknown_dataset_name():
    with pytest.raises(DatasetError) as err:
        load_torchvision_dataset("imagenet", root="unused")
    assert str(err.value) == (
        "Unknown dataset 'imagenet'. Choose one of: mnist, fashion_mnist, cifar10 "
        "(or use load_digits_dataset() for the offline default)."
    )


def test_corrupted_files_are_one_clear_error(tmp_path):
    _fake_mnist(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:100])  # truncated download
    with pytest.raises(DatasetError) as err:
        load_torchvision_dataset("mnist", root=tmp_path)
    assert "are corrupted or not in the expected format" in str(err.value)
    assert "download=True" in str(err.value)
