"""Exercise spec for chapter 11 — 11.4 ``lm_score``: next-byte NLL, bits per byte, perplexity and
the standard error over blocks of a fixed :class:`~course_utils.models.TinyGPT`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..exercise import Exercise, _describe

# --- 11.4 lm_score ------------------------------------------------------------------------------


def _lm_case(seed: int) -> dict:
    from ..models import TinyGPT

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyGPT(vocab_size=256, context=16, dim=16, layers=1, heads=2)
    with torch.no_grad():
        for p in model.parameters():  # peaky predictions, so that mistakes move the numbers
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    block = [8, 16, 12, 5][seed % 4]
    length = block * (4 + seed % 5) + 1 + seed % block  # full blocks and a partial tail
    # bytes drawn from a small alphabet, like text
    tokens = torch.tensor([97, 98, 32, 101, 116, 10])[torch.randint(0, 6, (length,), generator=g)]
    return {"state": model.state_dict(), "tokens": tokens, "block_size": block}


def _lm_edge_cases() -> list[dict]:
    exact = _lm_case(50)
    b = exact["block_size"]
    exact["tokens"] = exact["tokens"][: 3 * b + 1]  # exactly three blocks, no tail
    two = _lm_case(51)
    two["tokens"] = two["tokens"][: 2 * two["block_size"] + 1]
    return [exact, two]


def _lm_model(inputs: dict) -> torch.nn.Module:
    from ..models import TinyGPT

    model = TinyGPT(vocab_size=256, context=16, dim=16, layers=1, heads=2)
    model.load_state_dict(inputs["state"])
    return model.eval()


_LM_KEYS = ("nll", "bpb", "ppl", "se_bpb", "blocks")


def _lm_run(fn, inputs: dict) -> dict:
    res = fn(_lm_model(inputs), inputs["tokens"].clone(), inputs["block_size"])
    if not isinstance(res, dict) or set(res) != set(_LM_KEYS):
        keys = sorted(map(str, res)) if isinstance(res, dict) else _describe(res)
        return {"returned": f"{keys}"}
    return {k: (int(res[k]) if k == "blocks" else float(res[k])) for k in _LM_KEYS}


def _lm_blocks(inputs: dict, step: int | None = None, shift: int = 1, partial: bool = False) -> torch.Tensor:
    """Per-block mean NLL (nats, float64) under a given block layout (mistakes included)."""
    model, tokens, b = _lm_model(inputs), inputs["tokens"], inputs["block_size"]
    step = b if step is None else step
    out = []
    start = 0
    with torch.no_grad():
        while start + b + shift <= len(tokens) or (partial and start + shift < len(tokens)):
            chunk = tokens[start : start + b + shift]
            x = chunk[: len(chunk) - shift] if shift else chunk
            y = chunk[shift:]
            logits = model(x[None]).double()[0]
            out.append(F.cross_entropy(logits, y, reduction="mean"))
            start += step
    return torch.stack(out)


def _lm_summary(block_nll: torch.Tensor, ddof: int = 1) -> dict:
    bpb = block_nll / math.log(2)
    n = len(bpb)
    se = float(bpb.std(correction=ddof) / math.sqrt(n)) if n > 1 else float("nan")
    nll = float(block_nll.mean())
    return {"nll": nll, "bpb": nll / math.log(2), "ppl": math.exp(nll), "se_bpb": se, "blocks": n}


def _lm_reference(inputs: dict) -> dict:
    return _lm_summary(_lm_blocks(inputs))


def _close(a: float, b: float, rtol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-9)


def _lm_compare(got: dict, expected: dict, inputs: dict) -> None:
    b, length = inputs["block_size"], len(inputs["tokens"])
    where = f"({length} tokens, block_size {b})"
    if "returned" in got:
        raise AssertionError(f"return a dict with keys {list(_LM_KEYS)}; got {got['returned']}.")
    if got["blocks"] != expected["blocks"]:
        if got["blocks"] == length // (b + 1) and got["blocks"] < expected["blocks"]:
            raise AssertionError(
                f"blocks = {got['blocks']} but there are {expected['blocks']} {where}: blocks start at 0, {b}, "
                f"{2 * b}, … (neighbours share one token), not every {b + 1}."
            )
        raise AssertionError(
            f"blocks = {got['blocks']} but there are {expected['blocks']} full blocks {where}: block k holds tokens "
            f"k·{b} … k·{b}+{b} (inputs block[:-1], targets block[1:]); drop a partial last block."
        )
    if not _close(got["nll"], expected["nll"], 1e-4):
        tips = []
        if _close(got["nll"], _lm_summary(_lm_blocks(inputs, shift=0))["nll"], 1e-4):
            tips.append("the target of position t is token t+1 (shift by one), not token t")
        elif _close(got["nll"], _lm_summary(_lm_blocks(inputs, step=b + 1))["nll"], 1e-4):
            tips.append(f"blocks start at 0, {b}, {2 * b}, … (neighbours share one token), not every {b + 1}")
        elif _close(got["nll"], expected["nll"] * math.log(2), 1e-4) or _close(
            got["nll"], expected["bpb"], 1e-4
        ):
            tips.append("nll is in nats: use the natural log (F.cross_entropy), not log2")
        raise AssertionError(
            f"nll {got['nll']:.6g} but expected {expected['nll']:.6g} nats/token {where}.\n  "
            + (
                "; ".join(tips)
                or "mean cross-entropy of model(block[:-1]) against block[1:] over all full blocks"
            )
        )
    if not _close(got["bpb"], expected["bpb"], 1e-4):
        raise AssertionError(f"bpb {got['bpb']:.6g} but expected {expected['bpb']:.6g}: bits = nats / ln 2.")
    if not _close(got["ppl"], expected["ppl"], 1e-4):
        raise AssertionError(
            f"ppl {got['ppl']:.6g} but expected {expected['ppl']:.6g}: perplexity = exp(nll in nats)."
        )
    if not _close(got["se_bpb"], expected["se_bpb"], 1e-3):
        tips = []
        blocks = _lm_blocks(inputs)
        if _close(got["se_bpb"], _lm_summary(blocks, ddof=0)["se_bpb"], 1e-3):
            tips.append("use the sample standard deviation (ddof=1, torch.std's default)")
        elif _close(got["se_bpb"], float((blocks / math.log(2)).std()), 1e-3):
            tips.append("the standard error is the standard deviation / sqrt(number of blocks)")
        elif _close(got["se_bpb"], float(blocks.std() / math.sqrt(len(blocks))), 1e-3):
            tips.append("compute the standard error of the per-block *bits* (nats / ln 2)")
        raise AssertionError(
            f"se_bpb {got['se_bpb']:.6g} but expected {expected['se_bpb']:.6g} {where}.\n  "
            + ("; ".join(tips) or "SE = std(per-block bpb, ddof=1) / sqrt(blocks)")
        )


EXERCISES = [
    Exercise(
        id="11.4",
        title="lm_score(model, tokens, block_size)",
        target="lm_score",
        points=3,
        make_case=_lm_case,
        run=_lm_run,
        reference=_lm_reference,
        compare=_lm_compare,
        edge_cases=_lm_edge_cases,
        public_seeds=(0, 1, 2),
        hint="blocks tokens[k·b : k·b+b+1] for every full block; F.cross_entropy per block; "
        "bpb = nll/ln 2; SE = std(block bpb)/sqrt(blocks).",
    ),
]
