"""Knowledge distillation (Hinton et al., 2015): train a small student on a teacher's soft targets.

Convention used throughout the course (exercise 8.1 extends it to an ensemble of teachers)::

    L = alpha · T² · KL( softmax(t/T) ‖ softmax(s/T) ) + (1 − alpha) · CE(s, y)

with the KL term computed as ``F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean")``
(mean over the batch of the per-sample KL divergence). The T² factor keeps the soft-target
gradients on the same scale as the hard-label ones when T changes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .training import History, train

__all__ = ["distillation_loss", "soft_targets", "distill"]


def soft_targets(logits: torch.Tensor, T: float) -> torch.Tensor:
    """``softmax(logits / T)``: a higher temperature spreads probability over more classes."""
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}.")
    return F.softmax(logits / T, dim=-1)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    T: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """``alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−alpha)·CE(s, y)`` (KL: batchmean)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape."
        )
    kl = F.kl_div(
        F.log_softmax(student_logits / T, dim=-1), soft_targets(teacher_logits, T), reduction="batchmean"
    )
    return alpha * T * T * kl + (1.0 - alpha) * F.cross_entropy(student_logits, targets)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    loaders: dict[str, DataLoader],
    epochs: int = 3,
    T: float = 4.0,
    alpha: float = 0.7,
    lr: float = 5e-4,
    progress: bool = True,
) -> History:
    """Train ``student`` in place with ``distillation_loss`` against a frozen ``teacher`` (Adam).

    The teacher runs in eval mode without gradients; the student is returned to eval mode.
    """
    teacher = copy.deepcopy(teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def kd_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t_logits = teacher(x)
        return distillation_loss(model(x), t_logits, y, T, alpha)

    return train(
        student,
        loaders,
        epochs=epochs,
        lr=lr,
        loss_fn=kd_loss,
        progress=progress,
        desc=f"distill (T={T:g}, alpha={alpha:g})",
    )
