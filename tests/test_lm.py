"""Chapter 11 helpers: corpus, TinyGPT's KV cache, evaluation, training, int4, Wanda/N:M, timing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import llm_compress as lc
from course_utils import lm, lm_measure
from course_utils.models import TinyGPT

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(context=16, dim=32, layers=2, heads=2).eval()


def test_corpus_is_offline_bytes_with_disjoint_held_out_topics() -> None:
    c = lm.load_corpus()
    assert len(c.train) > 200_000 and len(c.val) > 10_000
    assert c.train.dtype == torch.long and 0 <= int(c.train.min()) and int(c.train.max()) < 256
    assert c.topics[1] >= 5 and "pydoc_data" in c.source and "PSF" in c.license
    assert lm.decode(lm.encode("héllo")) == "héllo"


def test_kv_cache_decode_equals_full_forward() -> None:
    m = _tiny()
    idx = torch.randint(0, 256, (2, 12))
    full = m(idx)
    logits, cache = m.prefill(idx[:, :8])
    torch.testing.assert_close(logits, full[:, :8])
    for t in range(8, 12):
        step, cache = m.decode_step(idx[:, t : t + 1], cache)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="exceeds the context"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_evaluate_lm_matches_a_manual_computation() -> None:
    m = _tiny(1)
    tokens = torch.randint(0, 256, (8 * 5 + 3,))
    sc = lm.evaluate_lm(m, tokens, block_size=8, batch_size=2)
    assert sc.blocks == 5
    per = []
    for k in range(5):
        chunk = tokens[8 * k : 8 * k + 9]
        per.append(F.cross_entropy(m(chunk[None, :-1])[0], chunk[1:]).item())
    per_t = torch.tensor(per, dtype=torch.float64)
    assert sc.nll == pytest.approx(float(per_t.mean()), rel=1e-5)
    assert sc.bpb == pytest.approx(sc.nll / math.log(2))
    assert sc.ppl == pytest.approx(math.exp(sc.nll))
    assert sc.se_bpb == pytest.approx(float((per_t / math.log(2)).std() / math.sqrt(5)), rel=1e-4)
    d, se = sc.diff(sc)
    assert d == 0.0 and se == 0.0


def test_train_lm_lowers_the_loss_and_distils() -> None:
    torch.manual_seed(0)
    text = lm.encode("the quick brown fox jumps over the lazy dog. " * 40)
    m = _tiny()
    losses = lm.train_lm(m, text, steps=40, batch_size=8, lr=3e-3, progress=False)
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0
    student = TinyGPT(context=16, dim=16, layers=1, heads=2)
    kd = lm.train_lm(student, text, steps=10, batch_size=4, teacher=m, progress=False)
    assert all(math.isfinite(v) for v in kd)


def test_pretrained_lm_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="tiny_gpt"):
        lm.pretrained_lm("nope")


@pytest.mark.parametrize("group", [16, 32, 64])
def test_int4_matches_torchao_and_packs_two_codes_per_byte(group: int) -> None:
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

    w = torch.randn(24, 128) * 0.1
    w[0] = w[0].abs()
    packed, s, z = lc.quantize_int4(w, group)
    s2, z2 = choose_qparams_affine(w, MappingType.ASYMMETRIC, (1, group), torch.uint8, 0, 15)
    assert torch.equal(s, s2) and torch.equal(z, z2)
    assert packed.shape == (24, 64) and packed.dtype == torch.uint8
    assert torch.equal(lc.unpack_int4(packed), quantize_affine(w, (1, group), s2, z2, torch.uint8, 0, 15))
    w_hat = lc.dequantize_int4(packed, s, z, group)
    assert (w_hat - w).abs().max() <= s.max() / 2 + 1e-6  # within half a step of the grid


def test_int4_linear_kernels_agree() -> None:
    lin = nn.Linear(128, 48)
    x = torch.randn(3, 5, 128)
    ref = lc.Int4Linear(lin, 32)(x)
    torch.testing.assert_close(lc.Int4Linear(lin, 32, kernel="aten")(x), ref, rtol=1e-4, atol=1e-4)
    assert (ref - lin(x)).abs().max() < 0.2 * lin(x).abs().max()  # 4-bit: close, not equal
    m = lc.int4_weight_only(_tiny(), 16)
    assert not any(type(mod) is nn.Linear for mod in m.modules())


def test_masks_and_pruning() -> None:
    score = torch.rand(6, 16)
    mask = lc.nm_mask(score, 2, 4)
    assert (mask.reshape(6, 4, 4).sum(-1) == 2).all()
    kept = torch.where(mask, score, torch.tensor(-1.0)).reshape(6, 4, 4).topk(2, -1).values.min(-1).values
    dropped = torch.where(~mask, score, torch.tensor(2.0)).reshape(6, 4, 4).min(-1).values
    assert (kept >= dropped).all()
    assert (lc.row_unstructured_mask(score, 0.25).sum(1) == 12).all()
    m = _tiny()
    names = lc.block_linears(m)
    assert names and all(n.startswith("blocks.") for n in names)
    x = [torch.randint(0, 256, (2, 16))]
    norms = lc.input_norms(m, x, names)
    emb = m.blocks[0].ln1(m.tok_emb(x[0]) + m.pos_emb.weight[:16])
    torch.testing.assert_close(norms["blocks.0.attn.qkv"], emb.reshape(-1, 32).norm(dim=0))
    wanda = lc.prune_linears(m, norms, names, nm=(2, 4))
    mag = lc.prune_linears(m, None, names, nm=(2, 4))
    w_w, w_m = wanda.blocks[0].attn.qkv.weight, mag.blocks[0].attn.qkv.weight
    assert float((w_w == 0).float().mean()) == pytest.approx(0.5)
    assert not torch.equal(w_w == 0, w_m == 0)
    assert "CUDA" in lc.semi_structured_status() or "accepted" in lc.semi_structured_status()


def test_measurements_are_shares_and_positive_times() -> None:
    m = _tiny()
    dec = lm_measure.decode_fn(m, prompt_len=4, new_tokens=3)
    share = lm_measure.time_breakdown(m, dec, repeats=1)
    assert sum(share.values()) == pytest.approx(1.0) and share["Linear"] > 0
    pre = lm_measure.prefill_fn(m, batch=2, length=8)
    flops = lm_measure.flop_breakdown(m, pre, batch=2, new=8, kv=8)
    linear_params = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, nn.Linear))
    assert flops["Linear"] == 2 * 2 * 8 * linear_params
    ms = lm_measure.interleaved_ms({"a": pre, "b": dec}, rounds=1, min_run_time=0.01)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())
    assert lm_measure.decode_bytes(m, 10)["Linear weights"] == 4 * linear_params
