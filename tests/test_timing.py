"""The shared interleaved timing loop (course_utils.timing)."""

from __future__ import annotations

import time

import pytest
import torch

from course_utils import timing


def test_rounds_rotate_the_order_and_count_calls():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = timing.interleaved_rounds(fns, warmup=1, rounds=3, number=2)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    timed = calls[3:]  # after one warm-up call each
    firsts = [timed[i] for i in range(0, len(timed), 6)]  # first variant of each round
    assert firsts == ["a", "b", "c"]
    assert timed.count("a") == 6  # 3 rounds x 2 calls


def test_known_relative_cost_is_measured():
    fns = {"slow": lambda: time.sleep(0.004), "fast": lambda: time.sleep(0.001)}
    ms = timing.median_ms(timing.interleaved_rounds(fns, warmup=0, rounds=5, block_s=0.02))
    assert ms["slow"] / ms["fast"] > 2.0


def test_block_size_fills_block_s_and_threads_are_restored():
    before = torch.get_num_threads()
    seen: list[int] = []
    grad: list[bool] = []

    def fn() -> None:
        seen.append(torch.get_num_threads())
        grad.append(torch.is_grad_enabled())
        time.sleep(0.001)

    timing.interleaved_rounds({"f": fn}, threads=1, warmup=0, rounds=2, block_s=0.01)
    assert set(seen) == {1} and not any(grad)
    assert torch.get_num_threads() == before
    assert 1 + 2 * 2 <= len(seen) <= 1 + 2 * 11  # 1 sizing call, then ~9 calls of >= 1 ms per 10 ms block


@pytest.mark.parametrize(
    "kw",
    [dict(threads=0), dict(rounds=0), dict(warmup=-1), dict(block_s=0.0), dict(number=0)],
)
def test_bad_arguments_are_refused(kw):
    with pytest.raises(ValueError):
        timing.interleaved_rounds({"f": lambda: None}, **kw)


def test_no_functions_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        timing.interleaved_rounds({})
