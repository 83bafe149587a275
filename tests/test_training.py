"""Training: determinism, evaluate(), train() contract, and the pretrained() cache."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import training
from course_utils.training import Recipe, evaluate, pretrained, seed_everything, train


def _small_loaders(digits, n: int = 256):
    x, y = digits.train.tensors
    return {
        "train": DataLoader(
            TensorDataset(x[:n], y[:n]),
            batch_size=64,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        ),
        "val": DataLoader(TensorDataset(*digits.val.tensors), batch_size=256),
    }


def _trained_state(digits, seed: int) -> dict[str, torch.Tensor]:
    from course_utils.models import build_model

    seed_everything(seed)
    model = build_model("course_cnn")
    train(model, _small_loaders(digits), epochs=1, progress=False)
    return model.state_dict()


def test_same_seed_same_weights(digits, one_thread):
    a, b, c = _trained_state(digits, 0), _trained_state(digits, 0), _trained_state(digits, 1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_seed_everything_seeds_python_numpy_torch():
    import random

    import numpy as np

    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


class _Constant(nn.Module):
    """Always predicts ``cls``."""

    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 10)
        out[:, self.cls] = 1.0
        return out


def test_evaluate_is_exact_fraction_and_restores_mode():
    y = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    loader = DataLoader(TensorDataset(torch.zeros(10, 1), y), batch_size=3)
    model = _Constant(0).train()
    assert evaluate(model, loader) == 0.3
    assert model.training  # evaluate() switches to eval and back
    with pytest.raises(ValueError, match=r"evaluate\(\) got an empty loader\."):
        evaluate(model, [])


def test_train_history_and_callbacks(digits, one_thread):
    from course_utils.models import build_model

    calls = []
    model = build_model("mlp")
    h = train(
        model, _small_loaders(digits), epochs=2, progress=False, on_epoch_end=lambda e, m: calls.append(e)
    )
    assert calls == [0, 1] and len(h.train_loss) == len(h.val_accuracy) == 2
    assert h.train_loss[1] < h.train_loss[0]
    assert not model.training
    with pytest.raises(ValueError, match=r"epochs must be >= 0, got -1\."):
        train(model, _small_loaders(digits), epochs=-1)


# --- pretrained() cache ---------------------------------------------------------------------------


@pytest.fixture
def tiny_recipe(monkeypatch, cache_dir):
    """A 1-epoch MLP recipe registered as 'tiny', with a counter of train() calls."""
    monkeypatch.setitem(training.RECIPES, "tiny", Recipe("mlp", epochs=1))
    calls = []
    real_train = training.train

    def counting_train(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", counting_train)
    return calls


def _cache_file(cache_dir):
    files = list(cache_dir.glob("tiny-*.pt"))
    assert len(files) == 1, files
    return files[0]


def test_pretrained_trains_once_then_loads(cache_dir, tiny_recipe, one_thread):
    first = pretrained("tiny", progress=False)
    path = _cache_file(cache_dir)
    assert tiny_recipe == [1]
    mtime = path.stat().st_mtime_ns
    second = pretrained("tiny", progress=False)
    assert tiny_recipe == [1], "the second call trained again instead of loading the cache"
    assert path.stat().st_mtime_ns == mtime
    assert not second.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    # every call returns a fresh copy
    with torch.no_grad():
        second.net[1].weight.zero_()
    assert pretrained("tiny", progress=False).net[1].weight.abs().sum() > 0


def test_pretrained_retrains_on_corrupted_cache(cache_dir, tiny_recipe, one_thread):
    good = pretrained("tiny", progress=False)
    path = _cache_file(cache_dir)
    path.write_bytes(b"not a checkpoint")
    again = pretrained("tiny", progress=False)
    assert tiny_recipe == [1, 1]
    assert (
        torch.load(path, weights_only=True).keys() == good.state_dict().keys()
    )  # overwritten with a valid file
    assert all(torch.equal(a, b) for a, b in zip(good.state_dict().values(), again.state_dict().values()))


def test_cache_key_changes_with_the_recipe(monkeypatch):
    key = training._recipe_key("tiny", Recipe("mlp", epochs=1))
    assert key == training._recipe_key("tiny", Recipe("mlp", epochs=1))
    assert key != training._recipe_key("tiny", Recipe("mlp", epochs=2))
    assert key != training._recipe_key("tiny", Recipe("mlp", epochs=1, seed=1))


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "c"))
    assert training.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("COURSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert training.cache_dir() == tmp_path / "xdg" / "compression-course"


def test_unknown_pretrained_name():
    with pytest.raises(ValueError) as err:
        pretrained("vgg16")
    assert (
        str(err.value)
        == "No pretrained recipe 'vgg16'. Choose one of: course_cnn, course_cnn_quant, lenet5, mlp, resnet_mini."
    )


def test_no_leftover_temp_files(cache_dir, tiny_recipe, one_thread):
    pretrained("tiny", progress=False)
    assert [p.name for p in cache_dir.iterdir() if ".tmp" in p.name] == []
    assert os.access(_cache_file(cache_dir), os.R_OK)
