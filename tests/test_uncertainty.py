"""metrics: binomial standard error of an accuracy, spread over repeats, beyond-noise test."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import metrics as M


def test_accuracy_se_is_the_binomial_formula_and_matches_simulation() -> None:
    assert M.accuracy_se(0.5, 100) == pytest.approx(0.05)
    assert M.accuracy_se(354 / 359, 359) == pytest.approx(0.00619, abs=1e-5)  # the digits test set
    assert M.accuracy_se(1.0, 50) == 0.0
    # the spread of simulated accuracies (p = 0.9 on n = 400) is the SE
    g = torch.Generator().manual_seed(0)
    sims = (torch.rand(4000, 400, generator=g) < 0.9).float().mean(1)
    assert float(sims.std()) == pytest.approx(M.accuracy_se(0.9, 400), rel=0.05)
    for bad in ((0.5, 0), (1.2, 10), (-0.1, 10)):
        with pytest.raises(ValueError):
            M.accuracy_se(*bad)


def test_accuracy_prints_with_plus_minus_and_measure_counts_examples() -> None:
    acc = M.Accuracy(0.9861, 359)
    assert str(acc) == "98.61 % ± 0.62" and float(acc) == 0.9861
    x = torch.randn(37, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, 0] = 1.0
        model.bias.zero_()
    got = M.measure_accuracy(model, DataLoader(TensorDataset(x, y), batch_size=10))
    assert got.n == 37 and got.value == 1.0
    wrong = M.measure_accuracy(model, [(x[:5], 1 - y[:5]), (x[5:9], y[5:9])])  # a plain iterable
    assert wrong.n == 9 and wrong.value == pytest.approx(4 / 9)


def test_mean_sd_and_beyond_noise() -> None:
    m, sd = M.mean_sd([0.6, 0.8, 1.0])
    assert m == pytest.approx(0.8) and sd == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least 2"):
        M.mean_sd([0.5])
    # 1 image on 359 digits is noise; 20 points is not
    assert not M.beyond_noise(M.Accuracy(354 / 359, 359), M.Accuracy(353 / 359, 359))
    assert M.beyond_noise(M.Accuracy(0.8, 359), M.Accuracy(0.6, 359))
    assert M.beyond_noise(M.Accuracy(0.99, 10_000), M.Accuracy(0.98, 10_000))
    assert not M.beyond_noise(M.Accuracy(0.99, 359), M.Accuracy(0.98, 359))
