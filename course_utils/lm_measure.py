"""Where a transformer spends time at decode and prefill, and interleaved latency measurements.

**Prefill**: one forward over a batch of prompts (``N×T`` tokens): matrix–matrix products.
**Decode**: one new token per step at batch 1 with the KV cache: every weight matrix is read
once to do a matrix–vector product, so decode is bound by the bytes of weights moved.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .timing import interleaved_rounds, median_ms

__all__ = [
    "decode_fn",
    "prefill_fn",
    "interleaved_ms",
    "time_breakdown",
    "flop_breakdown",
    "decode_bytes",
]


def decode_fn(model: nn.Module, prompt_len: int = 64, new_tokens: int = 32) -> Callable[[], None]:
    """A callable that decodes ``new_tokens`` greedy tokens at batch 1 from a prefilled cache."""
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 256, (1, prompt_len), generator=g)
    with torch.inference_mode():
        logits, cache = model.prefill(prompt)
    first = logits[:, -1:].argmax(-1)

    def run() -> None:
        with torch.inference_mode():
            tok, kv = first, cache
            for _ in range(new_tokens):
                logits, kv = model.decode_step(tok, kv)
                tok = logits[:, -1:].argmax(-1)

    return run


def prefill_fn(model: nn.Module, batch: int = 8, length: int = 128) -> Callable[[], None]:
    """A callable that runs one forward over ``batch × length`` random tokens."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 256, (batch, length), generator=g)

    def run() -> None:
        with torch.inference_mode():
            model(idx)

    return run


def interleaved_ms(
    fns: dict[str, Callable[[], None]], threads: int = 1, rounds: int = 5, min_run_time: float = 0.1
) -> dict[str, float]:
    """Median milliseconds per call of each function over ``rounds`` interleaved rounds of about
    ``min_run_time`` seconds each (:func:`course_utils.timing.interleaved_rounds`), so a change
    in machine load hits every variant alike."""
    return median_ms(interleaved_rounds(fns, threads=threads, warmup=1, rounds=rounds, block_s=min_run_time))


def time_breakdown(model: nn.Module, fn: Callable[[], None], repeats: int = 3) -> dict[str, float]:
    """Share of wall time per category, timed with forward hooks over ``repeats`` calls of ``fn``
    (after one warm-up): every ``*Linear`` module (float, dynamic int8, int4), the attention core
    (``CausalSelfAttention`` minus its two Linears: SDPA, KV-cache concat, reshapes), the token
    embedding, and the rest (LayerNorm, GELU, residual adds, Python between the modules)."""
    import time

    def category(mod: nn.Module) -> str | None:
        name = type(mod).__name__
        if "Linear" in name:
            return "Linear"
        if isinstance(mod, nn.Embedding):
            return "embedding"
        return "attention" if name == "CausalSelfAttention" else None

    attn_linears = {
        id(sub)
        for mod in model.modules()
        if category(mod) == "attention"
        for sub in mod.modules()
        if category(sub) == "Linear"
    }
    spent = {"Linear": 0.0, "attention": 0.0, "embedding": 0.0, "linear in attention": 0.0}
    starts: dict[int, float] = {}

    def pre(mod: nn.Module, _args: tuple) -> None:
        starts[id(mod)] = time.perf_counter()

    def post(mod: nn.Module, _args: tuple, _out: object) -> None:
        dt = time.perf_counter() - starts.pop(id(mod))
        spent[category(mod)] += dt
        if id(mod) in attn_linears:
            spent["linear in attention"] += dt

    fn()
    hooks = []
    for mod in model.modules():
        if category(mod) is not None:
            hooks += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        total = time.perf_counter() - t0
    finally:
        for h in hooks:
            h.remove()
    out = {
        "Linear": spent["Linear"],
        "attention core": max(spent["attention"] - spent["linear in attention"], 0.0),
        "embedding": spent["embedding"],
    }
    out["other (LayerNorm, GELU, adds, Python)"] = max(total - sum(out.values()), 0.0)
    return {k: v / total for k, v in out.items()}


def flop_breakdown(model: nn.Module, fn: Callable[[], None], batch: int, new: int, kv: int) -> dict[str, int]:
    """FLOPs of one call of ``fn``: Linear as counted by ``FlopCounterMode``; attention as
    ``4 · layers · batch · new · kv · dim`` (QKᵀ and AV, dense), because FlopCounterMode has no
    formula for the CPU flash-attention kernel (it counts it as 0). Embeddings are lookups: 0."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    counted = counter.get_flop_counts()["Global"]
    linear = sum(int(n) for op, n in counted.items() if "mm" in str(op) and "bmm" not in str(op))
    dim = model.tok_emb.embedding_dim
    attention = 4 * len(model.blocks) * batch * new * kv * dim
    return {
        "Linear": linear,
        "attention": attention,
        "attention counted by FlopCounterMode": int(
            sum(int(n) for op, n in counted.items() if "attention" in str(op) or "bmm" in str(op))
        ),
    }


def decode_bytes(model: nn.Module, position: int) -> dict[str, int]:
    """Bytes read to decode one token at ``position`` (fp32): all Linear weights, one embedding
    row plus one position row, and the KV cache (``2 · layers · position · dim`` floats)."""
    linear = sum(
        m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, nn.Linear)
    )
    dim = model.tok_emb.embedding_dim
    kv = 2 * len(model.blocks) * position * dim * 4
    return {"Linear weights": linear, "embedding rows": 2 * dim * 4, "KV cache": kv}
