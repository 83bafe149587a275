"""Accuracy with its noise: a test-set accuracy is a binomial estimate, so every comparison of
two models says how many standard errors apart they are (:func:`beyond_noise`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

__all__ = ["Accuracy", "accuracy_se", "measure_accuracy", "mean_sd", "beyond_noise"]


def accuracy_se(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` examples: ``√(p(1−p)/n)``.

    One example moves the accuracy by ``1/n``; at p = 98.6 % and n = 359 the SE is 0.62 pt.
    (It is 0 at p = 0 or 1, where the formula has nothing left to say.)
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 examples, got {n}.")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}.")
    return (accuracy * (1.0 - accuracy) / n) ** 0.5


@dataclass(frozen=True)
class Accuracy:
    """An accuracy measured on ``n`` examples; prints as ``98.61 % ± 0.62`` (± one binomial SE, in pt)."""

    value: float
    n: int

    @property
    def se(self) -> float:
        """Binomial standard error ``√(p(1−p)/n)`` (a fraction, like ``value``)."""
        return accuracy_se(self.value, self.n)

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{100 * self.value:.2f} % ± {100 * self.se:.2f}"


def measure_accuracy(model: nn.Module, loader: Iterable) -> Accuracy:
    """Top-1 accuracy of ``model`` on ``loader`` with the number of examples it was measured on."""
    from .training import evaluate

    value = evaluate(model, loader)
    dataset = getattr(loader, "dataset", None)
    n = len(dataset) if dataset is not None else sum(int(y.numel()) for _, y in loader)
    return Accuracy(value, n)


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n − 1``) of repeated measurements, e.g. over seeds."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError(f"mean_sd needs at least 2 values to estimate a spread, got {len(v)}.")
    m = sum(v) / len(v)
    return m, (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5


def beyond_noise(a: Accuracy, b: Accuracy, k: float = 2.0) -> bool:
    """True when ``|a − b| > k · √(SE_a² + SE_b²)``: a difference larger than its noise.

    Treats the two measurements as independent, which is conservative for two models on
    the same test set; ``k = 2`` is roughly a 95 % two-sided test.
    """
    return abs(a.value - b.value) > k * (a.se**2 + b.se**2) ** 0.5
