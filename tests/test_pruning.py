"""course_utils.pruning: counts like torch, physical channel removal, scans and curves."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from course_utils import pruning as P
from course_utils.metrics import count_flops, count_parameters, sparsity
from course_utils.models import CourseCNN


def _cnn(seed: int = 0, channels: tuple[int, int] = (8, 12)) -> CourseCNN:
    torch.manual_seed(seed)
    m = CourseCNN(channels=channels, hidden=16)
    with torch.no_grad():  # non-trivial BN statistics so that slicing them matters
        for bn in (m.features[1], m.features[5]):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
    return m.eval()


def _loaders(n: int = 64) -> dict[str, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)
    ds = TensorDataset(x, y)
    return {
        "train": DataLoader(ds, batch_size=16, shuffle=True, generator=g),
        "val": DataLoader(ds, batch_size=32),
        "test": DataLoader(ds, batch_size=32),
    }


@pytest.mark.parametrize("amount", [0, 3, 10, 0.0, 0.25, 0.5, 0.75, 1.0, 0.15])
def test_n_to_prune_counts_like_torch(amount: int | float) -> None:
    t = torch.randn(10)
    mask = prune.L1Unstructured(amount).compute_mask(t, torch.ones_like(t))
    assert P.n_to_prune(amount, 10) == int((mask == 0).sum())


@pytest.mark.parametrize("bad", [-1, 11, 1.5, -0.1, "half", True])
def test_n_to_prune_rejects_bad_amounts(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="amount"):
        P.n_to_prune(bad, 10)  # type: ignore[arg-type]


def test_global_magnitude_prune_matches_torch_and_counts() -> None:
    a, b = _cnn(), _cnn()
    P.global_magnitude_prune(a, 0.8)
    prune.global_unstructured(P.prunable_parameters(b), prune.L1Unstructured, amount=0.8)
    masks_a, masks_b = P.pruning_masks(a), P.pruning_masks(b)
    assert list(masks_a) == [
        "features.0.weight",
        "features.4.weight",
        "classifier.1.weight",
        "classifier.3.weight",
    ]
    for k in masks_a:
        assert torch.equal(masks_a[k], masks_b[k])
    total = sum(m.numel() for m in masks_a.values())
    assert sum(int((m == 0).sum()) for m in masks_a.values()) == round(0.8 * total)
    # a layer-wise pruning hits every layer with the same fraction instead
    c = P.layerwise_magnitude_prune(_cnn(), 0.5)
    for k, m in P.pruning_masks(c).items():
        assert int((m == 0).sum()) == round(0.5 * m.numel()), k


def test_layerwise_only_and_unknown_names() -> None:
    m = P.layerwise_magnitude_prune(_cnn(), 0.5, only=["features.4"])
    assert list(P.pruning_masks(m)) == ["features.4.weight"]
    with pytest.raises(ValueError, match="No module named"):
        P.layerwise_magnitude_prune(_cnn(), 0.5, only=["features.9"])
    with pytest.raises(ValueError, match="has no"):
        P.global_magnitude_prune(nn.Sequential(nn.ReLU()), 0.5)


def test_make_permanent_keeps_zeros_and_removes_reparameterization() -> None:
    m = P.global_magnitude_prune(_cnn(), 0.6)
    x = torch.randn(3, 1, 16, 16)
    before, s = m(x), sparsity(m)
    P.make_permanent(m)
    assert not any(k.endswith(("_orig", "_mask")) for k in m.state_dict())
    assert all(not m_._forward_pre_hooks for m_ in m.modules())
    torch.testing.assert_close(m(x), before)
    assert sparsity(m) == pytest.approx(s)


def test_kept_channels_match_ln_structured() -> None:
    w = torch.randn(10, 3, 3, 3)
    for amount, n in [(0.5, 1), (3, 2), (0.25, float("inf")), (0, 1)]:
        mask = prune.LnStructured(amount, n=n, dim=0).compute_mask(w, torch.ones_like(w))
        expected = mask.flatten(1).any(1).nonzero().squeeze(1)
        assert torch.equal(P.kept_channels(w, amount, n), expected)
    with pytest.raises(ValueError, match="keep at least one"):
        P.kept_channels(w, 1.0)
    with pytest.raises(ValueError, match="≥2-D"):
        P.channel_norms(torch.randn(5))


@pytest.mark.parametrize("criterion", P.CHANNEL_CRITERIA)
def test_remove_channels_equals_the_model_with_those_channels_silenced(criterion: str) -> None:
    """Zeroing BN's γ and β of a removed channel makes it output exactly 0 after ReLU:
    that model and the physically smaller one must compute the same function."""
    model = _cnn(1)
    small = P.remove_channels(model, 0.5, criterion=criterion)
    assert isinstance(small, CourseCNN)
    assert small.features[0].out_channels == 4 and small.features[4].out_channels == 6
    assert small.features[4].in_channels == 4 and small.classifier[1].in_features == 6 * 16

    silenced = copy.deepcopy(model)
    scores = P.channel_importance(model, criterion)
    for (conv, bn), score in zip(
        ((silenced.features[0], silenced.features[1]), (silenced.features[4], silenced.features[5])), scores
    ):
        keep = P.top_channels(score, 0.5)
        drop = torch.ones(conv.out_channels, dtype=torch.bool)
        drop[keep] = False
        with torch.no_grad():
            bn.weight[drop] = 0.0
            bn.bias[drop] = 0.0
    x = torch.randn(5, 1, 16, 16)
    torch.testing.assert_close(small(x), silenced(x), atol=1e-5, rtol=1e-5)
    # the input model is untouched and the smaller one really is smaller
    assert model.features[0].out_channels == 8
    assert count_parameters(small) < count_parameters(model)
    assert count_flops(small, x) < 0.5 * count_flops(model, x)


def test_channel_importance_criteria_follow_their_formulas() -> None:
    model = _cnn(3)
    conv1, bn1, conv2, bn2 = model.features[0], model.features[1], model.features[4], model.features[5]
    lin1 = model.classifier[1]
    gamma = P.channel_importance(model, "bn_gamma")
    assert torch.equal(gamma[0], bn1.weight.detach().abs()) and torch.equal(
        gamma[1], bn2.weight.detach().abs()
    )
    filt = P.channel_importance(model, "filter")  # L1 of each filter, as prune.ln_structured(n=1)
    torch.testing.assert_close(filt[1], conv2.weight.detach().abs().sum((1, 2, 3)))
    folded = P.channel_importance(model, "folded")  # L1 of W·γ/σ
    w_fold = (
        conv1.weight.detach()
        * (bn1.weight / (bn1.running_var + bn1.eps).sqrt()).detach()[:, None, None, None]
    )
    torch.testing.assert_close(folded[0], w_fold.abs().sum((1, 2, 3)))
    nxt = P.channel_importance(model, "next_input")  # L2 of the weights that read channel c
    torch.testing.assert_close(nxt[0], conv2.weight.detach().pow(2).sum((0, 2, 3)).sqrt())
    c2, spatial = conv2.out_channels, lin1.in_features // conv2.out_channels
    c = 5
    torch.testing.assert_close(nxt[1][c], lin1.weight.detach()[:, c * spatial : (c + 1) * spatial].norm())
    r0, r1 = P.channel_importance(model, "random", seed=0), P.channel_importance(model, "random", seed=1)
    assert torch.equal(r0[1], P.channel_importance(model, "random", seed=0)[1]) and not torch.equal(
        r0[1], r1[1]
    )
    assert r0[1].shape == (c2,)
    with pytest.raises(ValueError, match="bn_gamma"):
        P.channel_importance(model, "l1")


def test_remove_channels_default_is_bn_gamma_and_filter_norm_is_scale_free() -> None:
    """Behind a bias-free conv + BN, scaling filter c by a (and its running stats by a, a²)
    leaves the network unchanged but changes its filter-norm rank; BN |γ| does not move."""
    model = _cnn(4)
    assert P.DEFAULT_CHANNEL_CRITERION == "bn_gamma"
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(P.remove_channels(model, 0.5)(x), P.remove_channels(model, 0.5, "bn_gamma")(x))
    rescaled = copy.deepcopy(model)
    a = torch.logspace(-2, 2, rescaled.features[0].out_channels)[
        torch.randperm(rescaled.features[0].out_channels)
    ]
    with torch.no_grad():
        rescaled.features[0].weight.mul_(a[:, None, None, None])
        rescaled.features[1].running_mean.mul_(a)
        bn = rescaled.features[1]  # σ'² + ε = a²(σ² + ε): the normalized output is unchanged
        bn.running_var.copy_(a**2 * (bn.running_var + bn.eps) - bn.eps)
    torch.testing.assert_close(rescaled(x), model(x), atol=1e-4, rtol=1e-4)
    assert not torch.equal(
        P.top_channels(P.channel_importance(rescaled, "filter")[0], 0.5),
        P.top_channels(P.channel_importance(model, "filter")[0], 0.5),
    )
    for crit in ("bn_gamma", "next_input"):
        assert torch.equal(P.channel_importance(rescaled, crit)[0], P.channel_importance(model, crit)[0])


def test_remove_channels_pair_amounts_pruned_inputs_and_errors() -> None:
    model = P.global_magnitude_prune(_cnn(2), 0.3)  # masks are baked in first
    small = P.remove_channels(model, (2, 0.25))
    assert (small.features[0].out_channels, small.features[4].out_channels) == (6, 9)
    assert any(k.endswith("_mask") for k in model.state_dict())  # input still pruned, not modified
    same = P.remove_channels(_cnn(2), 0)
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(same(x), _cnn(2)(x))
    with pytest.raises(TypeError, match="CourseCNN"):
        P.remove_channels(nn.Sequential(nn.Conv2d(1, 2, 3)), 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="remove all"):
        P.remove_channels(_cnn(), 1.0)


def test_slicing_helpers_copy_values() -> None:
    lin = nn.Linear(6, 4)
    idx = torch.tensor([0, 2, 5])
    s = P.slice_linear(lin, in_idx=idx, out_idx=torch.tensor([1, 3]))
    assert torch.equal(s.weight, lin.weight.detach()[[1, 3]][:, idx]) and torch.equal(
        s.bias, lin.bias.detach()[[1, 3]]
    )
    bn = nn.BatchNorm2d(5)
    bn.running_mean.normal_()
    b = P.slice_batchnorm2d(bn.eval(), torch.tensor([1, 4]))
    assert torch.equal(b.running_mean, bn.running_mean[[1, 4]]) and not b.training
    with pytest.raises(ValueError, match="groups=1"):
        P.slice_conv2d(nn.Conv2d(4, 4, 3, groups=2))


def test_sensitivity_scan_and_sparsity_curve_shapes_and_limits() -> None:
    model, loaders = _cnn(3), _loaders()
    scan = P.sensitivity_scan(model, loaders["val"], amounts=(0.0, 1.0), progress=False)
    assert list(scan.accuracy) == ["features.0", "features.4", "classifier.1", "classifier.3"]
    for accs in scan.accuracy.values():
        assert len(accs) == 2 and accs[0] == pytest.approx(scan.baseline)  # amount 0 changes nothing
    assert not any(k.endswith("_mask") for k in model.state_dict())  # model untouched

    curve = P.sparsity_accuracy_curve(model, loaders, amounts=(0.5, 0.9), epochs=1, progress=False)
    assert len(curve.before) == len(curve.after) == 2
    assert all(0.0 <= a <= 1.0 for a in curve.before + curve.after)
    assert not any(k.endswith("_mask") for k in model.state_dict())


def test_finetune_keeps_pruned_weights_at_zero() -> None:
    model = P.global_magnitude_prune(_cnn(4), 0.7)
    masks = P.pruning_masks(model)
    P.finetune(model, _loaders(), epochs=1, progress=False)
    weights = dict(model.named_modules())
    for key, mask in masks.items():
        mname, pname = key.rsplit(".", 1)
        w = getattr(weights[mname], pname)
        assert bool((w[mask == 0] == 0).all()), key
        assert not torch.equal(getattr(weights[mname], pname + "_orig")[mask == 1], torch.zeros(1))


def test_clone_model_copies_pruned_models_that_deepcopy_refuses() -> None:
    model = P.global_magnitude_prune(_cnn(5), 0.5)
    with pytest.raises(RuntimeError, match="deepcopy"):
        copy.deepcopy(model)  # the computed `weight` is a non-leaf tensor
    twin = P.clone_model(model)
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(twin(x), model(x))
    with torch.no_grad():
        twin.features[0].weight_orig.add_(1.0)
    assert not torch.allclose(twin(x), model(x))  # independent copies
    assert torch.equal(
        P.pruning_masks(twin)["features.0.weight"], P.pruning_masks(model)["features.0.weight"]
    )


def test_compare_channel_criteria_measures_each_criterion_and_draw() -> None:
    from course_utils.training import evaluate

    model, loaders = _cnn(5), _loaders()
    res = P.compare_channel_criteria(
        model, loaders, 0.5, criteria=("bn_gamma", "random"), random_draws=2, progress=False
    )
    assert list(res) == ["bn_gamma", "random"] and res["bn_gamma"].n == 64
    assert len(res["random"].removed) == len(res["random"].finetuned) == 2
    assert res["bn_gamma"].removed == [evaluate(P.remove_channels(model, 0.5), loaders["test"])]
    assert res["random"].removed[1] == evaluate(
        P.remove_channels(model, 0.5, "random", seed=1), loaders["test"]
    )
    # fine-tuning the same channels from the same seed and data order gives the same result
    again = P.compare_channel_criteria(model, loaders, 0.5, criteria=("bn_gamma",), progress=False)
    assert again["bn_gamma"].finetuned == res["bn_gamma"].finetuned
    assert model.features[0].out_channels == 8  # the input model is unchanged
