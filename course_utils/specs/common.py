"""Helpers shared by the exercise specs: mask comparison with torch's pruning counts and
calling student code so that an exception becomes a value the comparison can report."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..exercise import assert_same

# --- shared mask comparison ------------------------------------------------------------------


def _n_pruned_text(amount: Any, n: int, what: str = "entries") -> str:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return ""
    if isinstance(amount, int):
        return f" (amount={amount} is an int: prune exactly {amount} {what})"
    return f" (amount={amount} of {n} {what}: torch prunes round({amount}·{n}) = {round(amount * n)})"


def compare_masks(
    got: Any,
    expected: torch.Tensor,
    scores: torch.Tensor | None = None,
    *,
    path: str = "mask",
    amount: Any = None,
    units: int | None = None,
    what: str = "entries",
    keep_zero: torch.Tensor | None = None,
) -> None:
    """Compare a 0/1 mask with torch's, explaining the difference; ties in ``scores`` are allowed.

    With ``scores`` (the importance of every entry, e.g. ``|w|`` or the channel norm broadcast
    to the weight's shape) a different mask is accepted when it prunes the same number of
    entries with the same multiset of scores: it only breaks ties differently than ``topk``.
    ``keep_zero``: entries that must stay pruned (an earlier mask).
    """
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{path}: expected a tensor mask, got {type(got).__name__}.")
    if got.shape != expected.shape:
        raise AssertionError(
            f"{path}: shape {tuple(got.shape)} but the weight (and torch's mask) has shape "
            f"{tuple(expected.shape)}. A mask has exactly the shape of the tensor it masks."
        )
    g = got.detach().to(torch.float32)
    if not bool(((g == 0) | (g == 1)).all()):
        raise AssertionError(f"{path}: a mask holds only 0 (pruned) and 1 (kept); got other values.")
    e = expected.detach().to(torch.float32)
    if torch.equal(g, e):
        return
    if keep_zero is not None:
        revived = (keep_zero == 0) & (g == 1)
        if bool(revived.any()):
            at = tuple(revived.nonzero()[0].tolist())
            raise AssertionError(
                f"{path}: entry {at} was already pruned by the earlier mask but your mask keeps it. "
                "A second pruning can only remove more entries."
            )
    alive = torch.ones_like(e, dtype=torch.bool) if keep_zero is None else keep_zero != 0
    ng, ne = int(((g == 0) & alive).sum()), int(((e == 0) & alive).sum())
    if ng != ne:
        n = units if units is not None else e.numel()
        unit = what if units is None else "entries"
        per = e.numel() // units if units else 0
        if units and keep_zero is None and per and ng % per == 0:
            ng, ne, unit = ng // per, ne // per, what  # count whole slices
        if keep_zero is not None:
            unit = f"of the {int(alive.sum())} still-unpruned entries"
        raise AssertionError(
            f"{path}: you pruned {ng} {unit} but torch prunes {ne}{_n_pruned_text(amount, n, what)}."
        )
    if scores is not None:
        s = scores.detach().to(torch.float32)
        if torch.equal(s[g == 0].sort().values, s[e == 0].sort().values):
            return  # same scores pruned: only ties were broken differently
        wrong = ((g == 0) & (e == 1)).nonzero()[:3].tolist()
        rows = "\n".join(
            f"    you prune {tuple(i)} (score {s[tuple(i)].item():.4g}) which torch keeps" for i in wrong
        )
        lo_kept = s[e == 1].min().item() if bool((e == 1).any()) else float("nan")
        raise AssertionError(
            f"{path}: the right number ({ng}) is pruned but not the right ones: torch prunes the "
            f"lowest scores (every kept score ≥ {lo_kept:.4g}).\n{rows}"
        )
    assert_same(g, e, path=path)


def _holder(t: torch.Tensor, name: str = "weight") -> nn.Module:
    """A bare module owning one parameter, to run ``torch.nn.utils.prune`` on."""
    m = nn.Module()
    m.register_parameter(name, nn.Parameter(t.detach().clone()))
    return m


def _safe(fn, *args) -> Any:
    """``fn(*args)``, or the text of the exception (so a later comparison can explain it)."""
    try:
        return fn(*args)
    except Exception as err:  # reported as a value: "expected a tensor, got str 'RuntimeError: …'"
        return f"{type(err).__name__}: {err}"[:300]
