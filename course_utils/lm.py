"""A byte-level language model for chapter 11: corpus, training, perplexity, generation.

The corpus is the English prose of the Python documentation that ships inside the standard
library (``pydoc_data/topics.py``, the text behind ``help("if")``; PSF License 2.0), so nothing
is downloaded. Text is UTF-8 bytes (vocabulary 256). Quality is **bits per byte** (bpb) on a
held-out set of topics: ``bpb = mean NLL / ln 2`` with the NLL in nats per predicted byte,
perplexity ``= exp(mean NLL)``. The noise of the estimate is the standard error over
equal-length blocks: ``SE = std(block bpb, ddof=1) / sqrt(blocks)``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .models import CausalSelfAttention, TinyGPT, TransformerBlock
from .training import cache_dir, load_cached, save_cached, seed_everything

__all__ = [
    "Corpus",
    "load_corpus",
    "encode",
    "decode",
    "LMScore",
    "evaluate_lm",
    "train_lm",
    "LMRecipe",
    "LM_RECIPES",
    "build_lm",
    "pretrained_lm",
    "generate",
]


@dataclass(frozen=True)
class Corpus:
    """Train and held-out byte tokens (1-D ``int64`` in 0..255) and where they came from."""

    train: torch.Tensor
    val: torch.Tensor
    source: str
    license: str
    topics: tuple[int, int]  # (train topics, held-out topics)
    sha256: str

    @property
    def chars(self) -> int:
        """Bytes in train + held-out (≈ characters: the text is 99.9 % ASCII)."""
        return len(self.train) + len(self.val)


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as a 1-D ``int64`` tensor."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(tokens: torch.Tensor | list[int]) -> str:
    """Bytes back to text (invalid UTF-8 sequences become U+FFFD)."""
    data = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    return bytes(int(t) for t in data).decode("utf-8", errors="replace")


def load_corpus(holdout_every: int = 10) -> Corpus:
    """Python's ``pydoc_data.topics``: topics sorted by name, every ``holdout_every``-th held out.

    Splitting by topic (not by position) keeps held-out text unseen as a whole document.
    """
    import pydoc_data.topics as topics_mod

    names = sorted(topics_mod.topics)
    train_parts, val_parts = [], []
    for i, name in enumerate(names):
        (val_parts if i % holdout_every == holdout_every // 2 else train_parts).append(
            topics_mod.topics[name]
        )
    train_text, val_text = "\n\n".join(train_parts), "\n\n".join(val_parts)
    sha = hashlib.sha256((train_text + "\0" + val_text).encode()).hexdigest()[:12]
    return Corpus(
        train=encode(train_text),
        val=encode(val_text),
        source=topics_mod.__file__,
        license="PSF License Agreement (Python documentation), © Python Software Foundation",
        topics=(len(train_parts), len(val_parts)),
        sha256=sha,
    )


# --- evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LMScore:
    """Mean NLL (nats/byte), bits per byte, perplexity and the standard error of bpb over blocks."""

    nll: float
    bpb: float
    ppl: float
    se_bpb: float
    blocks: int
    block_bpb: torch.Tensor = field(repr=False)  # per block, for paired comparisons

    def __str__(self) -> str:
        return f"{self.bpb:.3f} ± {self.se_bpb:.3f} bits/byte (ppl {self.ppl:.2f}, {self.blocks} blocks)"

    def diff(self, other: LMScore) -> tuple[float, float]:
        """Paired difference ``self.bpb − other.bpb`` on the same blocks and its standard error."""
        if self.blocks != other.blocks:
            raise ValueError("scores from different blocks cannot be paired.")
        d = self.block_bpb - other.block_bpb
        return float(d.mean()), float(d.std() / math.sqrt(len(d))) if len(d) > 1 else float("nan")


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    tokens: torch.Tensor,
    block_size: int = 128,
    batch_size: int = 32,
    max_blocks: int | None = None,
) -> LMScore:
    """Score ``model`` on consecutive blocks of ``block_size + 1`` tokens starting at
    ``0, block_size, 2·block_size, …`` (full blocks only): inputs ``block[:-1]``, targets
    ``block[1:]``. All blocks are equally long, so the token mean equals the block mean.
    """
    n_blocks = (len(tokens) - 1) // block_size
    if max_blocks is not None:
        n_blocks = min(n_blocks, max_blocks)
    if n_blocks < 1:
        raise ValueError(f"need at least {block_size + 1} tokens, got {len(tokens)}.")
    starts = torch.arange(n_blocks) * block_size
    idx = starts[:, None] + torch.arange(block_size + 1)[None, :]
    was_training = model.training
    model.eval()
    per_block = []
    for i in range(0, n_blocks, batch_size):
        chunk = tokens[idx[i : i + batch_size]]
        logits = model(chunk[:, :-1])
        nll = F.cross_entropy(logits.float().transpose(1, 2), chunk[:, 1:], reduction="none")
        per_block.append(nll.mean(dim=1))
    model.train(was_training)
    block_nll = torch.cat(per_block).double()
    block_bpb = block_nll / math.log(2)
    nll = float(block_nll.mean())
    se = float(block_bpb.std() / math.sqrt(n_blocks)) if n_blocks > 1 else float("nan")
    return LMScore(nll, nll / math.log(2), math.exp(nll), se, n_blocks, block_bpb.float())


# --- training -------------------------------------------------------------------------------


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train_lm(
    model: TinyGPT,
    tokens: torch.Tensor,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    teacher: nn.Module | None = None,
    T: float = 2.0,
    alpha: float = 0.7,
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    """AdamW on random windows of ``model.context + 1`` tokens; returns the loss per step.

    Without ``teacher``: next-byte cross-entropy. With ``teacher``: chapter 8's logit KD loss
    ``alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−alpha)·CE`` over every position.
    """
    from tqdm.auto import tqdm

    from .distillation import distillation_loss

    g = torch.Generator().manual_seed(seed)
    ctx = model.context
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    if teacher is not None:
        teacher = copy.deepcopy(teacher).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    losses: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup=max(1, steps // 20))
        starts = torch.randint(0, len(tokens) - ctx - 1, (batch_size,), generator=g)
        chunk = tokens[starts[:, None] + torch.arange(ctx + 1)[None, :]]
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(x).flatten(0, 1)
        if teacher is None:
            loss = F.cross_entropy(logits, y.flatten())
        else:
            with torch.no_grad():
                t_logits = teacher(x).flatten(0, 1)
            loss = distillation_loss(logits, t_logits, y.flatten(), T, alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


@dataclass(frozen=True)
class LMRecipe:
    """Architecture and training budget of a cached chapter-11 model."""

    dim: int = 128
    layers: int = 4
    heads: int = 4
    context: int = 128
    steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0
    teacher: str | None = None  # distil from this recipe's model instead of plain CE
    T: float = 2.0
    alpha: float = 0.7
    # pinned like training.pretrained(): the weights do not depend on the caller's thread count;
    # 2 threads (both cores of the course machine) train the teacher in ~75 s instead of ~140 s
    threads: int = 2


LM_RECIPES: dict[str, LMRecipe] = {
    "tiny_gpt": LMRecipe(),
    # half width, half depth; the same (small) budget of steps with and without the teacher
    "tiny_gpt_half": LMRecipe(dim=64, layers=2, heads=2, steps=200),
    "tiny_gpt_half_kd": LMRecipe(dim=64, layers=2, heads=2, steps=200, teacher="tiny_gpt"),
}


def build_lm(recipe: LMRecipe) -> TinyGPT:
    """An untrained :class:`TinyGPT` with the recipe's shape (vocabulary 256 bytes)."""
    return TinyGPT(context=recipe.context, dim=recipe.dim, layers=recipe.layers, heads=recipe.heads)


def _lm_key(name: str, recipe: LMRecipe, corpus: Corpus) -> str:
    """Hash of the recipe, the model and training code, the corpus text and the torch version."""
    from . import distillation

    h = hashlib.sha256(repr(recipe).encode())
    for obj in (TinyGPT, TransformerBlock, CausalSelfAttention, train_lm, _lr_at, load_corpus):
        h.update(inspect.getsource(obj).encode())
    h.update(inspect.getsource(distillation.distillation_loss).encode())
    h.update(corpus.sha256.encode())
    h.update(torch.__version__.split("+")[0].encode())
    if recipe.teacher is not None:
        h.update(_lm_key(recipe.teacher, LM_RECIPES[recipe.teacher], corpus).encode())
    return f"{name}-{h.hexdigest()[:12]}"


def pretrained_lm(name: str = "tiny_gpt", progress: bool = True) -> TinyGPT:
    """A trained chapter-11 model (eval mode), trained once and then loaded from the course cache
    (``training.cache_dir()``, key = hash of recipe + code + corpus + torch version)."""
    if name not in LM_RECIPES:
        raise ValueError(f"No language-model recipe {name!r}. Choose one of: {', '.join(LM_RECIPES)}.")
    recipe = LM_RECIPES[name]
    corpus = load_corpus()
    path = cache_dir() / f"{_lm_key(name, recipe, corpus)}.pt"
    model = build_lm(recipe)
    if load_cached(model, path):
        return model.eval()
    teacher = pretrained_lm(recipe.teacher, progress) if recipe.teacher else None
    seed_everything(recipe.seed)
    model = build_lm(recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        train_lm(
            model,
            corpus.train,
            recipe.steps,
            recipe.batch_size,
            recipe.lr,
            recipe.seed,
            teacher=teacher,
            T=recipe.T,
            alpha=recipe.alpha,
            progress=progress,
            desc=f"training {name} (cached afterwards)",
        )
    finally:
        torch.set_num_threads(threads)
    save_cached(model, path)
    return copy.deepcopy(model).eval()


@torch.no_grad()
def generate(
    model: TinyGPT, prompt: str, new_tokens: int = 80, temperature: float = 0.0, seed: int = 0
) -> str:
    """Continue ``prompt`` with the KV cache: greedy (``temperature=0``) or sampled from
    ``softmax(logits / temperature)`` with a seeded generator (prompt + new tokens ≤ context)."""
    g = torch.Generator().manual_seed(seed)
    idx = encode(prompt)[None, -(model.context - new_tokens) :]
    logits, cache = model.prefill(idx)
    out: list[int] = []
    while True:
        last = logits[:, -1]
        if temperature > 0:
            tok = torch.multinomial(F.softmax(last / temperature, dim=-1), 1, generator=g)
        else:
            tok = last.argmax(-1, keepdim=True)
        out.append(int(tok))
        if len(out) == new_tokens:
            return decode(out)
        logits, cache = model.decode_step(tok, cache)
