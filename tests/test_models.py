"""Models: output shapes, names, bad input, and each trains to >= 97 % test accuracy on digits."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from course_utils.models import MODEL_NAMES, CourseCNN, LeNet5, build_model
from course_utils.training import RECIPES, evaluate, seed_everything, train


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_on_digits_batch(name):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(4, 1, 16, 16))
    assert out.shape == (4, 10)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_other_image_sizes_and_channels(name):
    model = build_model(name, image_size=32, in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_course_cnn_layer_names_and_stubs():
    """Lessons fuse and prune by these names: features.0/1/2 is Conv-BN-ReLU, classifier.1 the big Linear."""
    m = CourseCNN()
    assert [type(m.features[i]) for i in (0, 1, 2)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert m.features[0].bias is None and m.features[4].bias is None
    assert (m.classifier[1].in_features, m.classifier[1].out_features) == (1024, 128)
    q = build_model("course_cnn_quant")
    assert type(q.quant).__name__ == "QuantStub" and type(q.dequant).__name__ == "DeQuantStub"
    assert isinstance(m.quant, nn.Identity)


def test_lenet5_parameter_count_matches_the_architecture():
    # conv 1→6 5×5, conv 6→16 5×5, fc 16·2·2→120→84→10 (with biases) for 16×16 inputs
    expected = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (64 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert sum(p.numel() for p in LeNet5().parameters()) == expected


def test_unknown_model_name():
    with pytest.raises(ValueError) as err:
        build_model("resnet50")
    assert (
        str(err.value)
        == "Unknown model 'resnet50'. Choose one of: course_cnn, course_cnn_quant, lenet5, mlp, resnet_mini."
    )


def test_lenet5_rejects_too_small_images():
    with pytest.raises(ValueError, match=r"LeNet5 needs image_size >= 12, got 8\."):
        LeNet5(image_size=8)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["course_cnn", "lenet5", "mlp"])
def test_recipe_trains_to_97_percent(name, digits, one_thread):
    """The pretrained recipe (same seed, epochs, lr) reaches >= 97 % on the 359 test digits."""
    recipe = RECIPES[name]
    seed_everything(recipe.seed)
    model = build_model(recipe.model, image_size=recipe.image_size)
    start = time.perf_counter()
    train(
        model,
        digits.loaders(recipe.batch_size, seed=recipe.seed),
        epochs=recipe.epochs,
        lr=recipe.lr,
        progress=False,
    )
    acc = evaluate(model, digits.loaders()["test"])
    print(
        f"{name}: {100 * acc:.2f}% test accuracy after {recipe.epochs} epochs in {time.perf_counter() - start:.1f} s"
    )
    assert acc >= 0.97
