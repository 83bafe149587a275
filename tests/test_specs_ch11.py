"""Chapter 11 specs: the reference solutions pass every case, a constant stub fails every case,
and plausible wrong answers fail with a message that says what to fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from spec_helpers import fails_with, run_all_cases

from course_utils.exercise import assert_same, chapter_exercises, get_exercise
from course_utils.notebooks import solution_namespace

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
IDS = ["11.1", "11.2", "11.3", "11.4"]


@pytest.fixture(scope="module")
def sol() -> dict[str, Any]:
    return solution_namespace(ROOT / "solutions" / "11_transformer_lm.ipynb")


def test_ids_and_points() -> None:
    assert [e.id for e in chapter_exercises(11)] == IDS
    assert all(1 <= get_exercise(i).points <= 3 for i in IDS)


@pytest.mark.parametrize("ex_id", IDS)
def test_solution_passes_every_case_and_cases_serialize(ex_id: str, sol: dict, tmp_path: Path) -> None:
    ex = get_exercise(ex_id)
    assert ex.edge_cases is not None
    assert run_all_cases(ex_id, sol[ex.target]) >= 5
    a, b = ex.make_case(0), ex.make_case(0)
    torch.save(a, tmp_path / "case.pt")
    assert_same(torch.load(tmp_path / "case.pt", weights_only=True), b)


@pytest.mark.parametrize("ex_id", IDS)
def test_constant_stub_fails_every_case(ex_id: str) -> None:
    ex = get_exercise(ex_id)
    ref0 = ex.reference(ex.make_case(0))
    answer = tuple(ref0.values()) if ex_id == "11.1" else ref0  # the answer of case 0, always

    def stub(*args: Any) -> Any:
        return answer

    for inputs in ex.cases(hidden=True)[1:]:
        with pytest.raises(AssertionError):
            ex.compare(ex.run(stub, inputs), ex.reference(inputs), inputs)


# --- 11.1 -------------------------------------------------------------------------------------


def test_quantize_int4_wrong_answers_fail(sol: dict) -> None:
    good = sol["quantize_int4"]

    def no_zero_in_range(w, g):  # min/max of the group without widening to include 0
        rows, cols = w.shape
        x = w.reshape(rows, cols // g, g)
        lo, hi = x.amin(-1), x.amax(-1)
        s = ((hi - lo) / 15).clamp(min=torch.finfo(torch.float32).smallest_normal)
        z = torch.clamp(-torch.round(lo / s), 0, 15)
        q = (
            torch.clamp(torch.round(x / s[..., None]) + z[..., None], 0, 15)
            .reshape(rows, cols)
            .to(torch.uint8)
        )
        return q[:, 0::2] | (q[:, 1::2] << 4), s, z.to(torch.int32)

    fails_with("11.1", no_zero_in_range, "include 0")

    def unpacked(w, g):
        packed, s, z = good(w, g)
        return torch.stack([packed & 15, packed >> 4], -1).flatten(-2), s, z

    fails_with("11.1", unpacked, "two 4-bit codes per byte")

    def swapped(w, g):
        packed, s, z = good(w, g)
        return (packed >> 4) | ((packed & 15) << 4), s, z

    fails_with("11.1", swapped, "nibbles are swapped")

    def per_row(w, g):  # one scale per row, ignoring the groups
        return good(w, w.shape[1])

    fails_with("11.1", per_row, "one scale per row and per group")

    def float_zero_point(w, g):
        packed, s, z = good(w, g)
        return packed, s, z.float()

    fails_with("11.1", float_zero_point, "integer tensor")


# --- 11.2 -------------------------------------------------------------------------------------


def test_dequantize_int4_wrong_answers_fail(sol: dict) -> None:
    def tiled(packed, s, z, g):  # repeat instead of repeat_interleave
        q = torch.stack([packed & 15, packed >> 4], -1).flatten(-2).float()
        return (q - z.float().repeat(1, g)) * s.repeat(1, g)

    fails_with("11.2", tiled, "repeat_interleave")

    def uint8_wrap(packed, s, z, g):  # subtracts in uint8 when z is uint8
        q = torch.stack([packed & 15, packed >> 4], -1).flatten(-2)
        return (q - z.repeat_interleave(g, 1)).float() * s.repeat_interleave(g, 1)

    fails_with("11.2", uint8_wrap, "before* subtracting")

    def no_zero_point(packed, s, z, g):
        q = torch.stack([packed & 15, packed >> 4], -1).flatten(-2).float()
        return q * s.repeat_interleave(g, 1)

    fails_with("11.2", no_zero_point, "subtract the zero point")

    def high_nibble_first(packed, s, z, g):
        return sol["dequantize_int4"]((packed >> 4) | ((packed & 15) << 4), s, z, g)

    fails_with("11.2", high_nibble_first, "entries differ")


# --- 11.3 -------------------------------------------------------------------------------------


def test_wanda_nm_mask_wrong_answers_fail(sol: dict) -> None:
    good = sol["wanda_nm_mask"]

    def magnitude(weight, x, n, m):
        return good(weight, torch.ones(1, weight.shape[1]), n, m)

    fails_with("11.3", magnitude, "magnitude pruning")

    def l1_norm(weight, x, n, m):
        return good(weight, x.abs().reshape(-1, x.shape[-1]).sum(0, keepdim=True), n, m)

    fails_with("11.3", l1_norm, "L2 norm")

    def keeps_lowest(weight, x, n, m):  # topk(largest=False): prunes the important weights
        score = weight.abs() * x.reshape(-1, x.shape[-1]).norm(dim=0)
        rows, cols = score.shape
        grp = score.reshape(rows, cols // m, m)
        keep = torch.zeros_like(grp, dtype=torch.bool)
        return keep.scatter_(-1, grp.topk(n, dim=-1, largest=False).indices, True).reshape(rows, cols)

    fails_with("11.3", keeps_lowest, "*highest*")

    def unstructured_per_row(weight, x, n, m):  # right score, but no groups of m
        score = weight.abs() * x.reshape(-1, x.shape[-1]).norm(dim=0)
        k = weight.shape[1] * n // m
        keep = torch.zeros_like(score, dtype=torch.bool)
        return keep.scatter_(1, score.topk(k, dim=1).indices, True)

    fails_with("11.3", unstructured_per_row, "consecutive inputs in a row must keep exactly")

    def float_mask(weight, x, n, m):
        return good(weight, x, n, m).float()

    fails_with("11.3", float_mask, "torch.bool")


# --- 11.4 -------------------------------------------------------------------------------------


def _score(model, tokens, b, *, shift=1, step=None, ddof=1, log2=False, partial=False):
    step = b if step is None else step
    per = []
    start = 0
    with torch.no_grad():
        while start + b + shift <= len(tokens) or (partial and start + 1 < len(tokens)):
            chunk = tokens[start : start + b + shift]
            x, y = (chunk[:-shift], chunk[shift:]) if shift else (chunk, chunk)
            per.append(F.cross_entropy(model(x[None])[0], y).double())
            start += step
    nll = torch.stack(per)
    bpb = nll / math.log(2)
    mean = float(nll.mean())
    return {
        "nll": mean,
        "bpb": mean if log2 else mean / math.log(2),
        "ppl": math.exp(mean),
        "se_bpb": float(bpb.std(correction=ddof) / math.sqrt(len(per))),
        "blocks": len(per),
    }


def test_lm_score_wrong_answers_fail() -> None:
    fails_with("11.4", lambda m, t, b: _score(m, t, b, shift=0), "token t+1")
    fails_with("11.4", lambda m, t, b: _score(m, t, b, step=b + 1), "share one token")
    fails_with("11.4", lambda m, t, b: _score(m, t, b, log2=True), "bits = nats / ln 2")
    fails_with("11.4", lambda m, t, b: _score(m, t, b, ddof=0), "ddof=1")
    fails_with("11.4", lambda m, t, b: _score(m, t, b, partial=True), "partial last block")
    fails_with("11.4", lambda m, t, b: {"nll": 1.0}, "return a dict with keys")
