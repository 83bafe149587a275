"""The course models: a Conv-BN-ReLU CNN, the classic LeNet-5 and a small MLP.

All take ``N×C×S×S`` images (default 1×16×16 upsampled digits) and return 10 logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub

__all__ = [
    "CourseCNN",
    "LeNet5",
    "MLP",
    "build_model",
    "MODEL_NAMES",
    "CausalSelfAttention",
    "TransformerBlock",
    "TinyGPT",
]


class CourseCNN(nn.Module):
    """Conv(1→c1)-BN-ReLU-Pool → Conv(c1→c2)-BN-ReLU-Pool → Linear(c2·(S/4)²→hidden)-ReLU → Linear(→10).

    ``features`` and ``classifier`` are ``nn.Sequential`` so that layers have stable names
    (``features.0`` is the first conv) for ``fuse_modules`` and pruning. With
    ``quant_stubs=True`` the input passes a ``QuantStub`` and the output a ``DeQuantStub``,
    which eager-mode static quantization needs to know where int8 starts and ends.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        in_channels: int = 1,
        image_size: int = 16,
        num_classes: int = 10,
        quant_stubs: bool = False,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        spatial = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * spatial * spatial, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.quant = QuantStub() if quant_stubs else nn.Identity()
        self.dequant = DeQuantStub() if quant_stubs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.classifier(self.features(self.quant(x))))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) as used in the pruning literature (Han et al., 2015).

    conv 6@5×5 → pool → conv 16@5×5 → pool → fc 120 → fc 84 → fc 10, ReLU activations.
    ``image_size`` 16 fits the upsampled digits, 28 fits MNIST.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        s = ((image_size // 2) - 4) // 2
        if s < 1:
            raise ValueError(f"LeNet5 needs image_size >= 12, got {image_size}.")
        self.fc1 = nn.Linear(16 * s * s, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class MLP(nn.Module):
    """Flatten → Linear(in→256) → ReLU → Linear(256→128) → ReLU → Linear(128→10).

    ``in_features`` defaults to ``in_channels · image_size²`` (256 for 1×16×16 digits).
    """

    def __init__(
        self,
        in_features: int | None = None,
        hidden: tuple[int, int] = (256, 128),
        num_classes: int = 10,
        image_size: int = 16,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        in_features = in_channels * image_size * image_size if in_features is None else in_features
        h1, h2 = hidden
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_BUILDERS = {
    "course_cnn": lambda **kw: CourseCNN(**kw),
    "course_cnn_quant": lambda **kw: CourseCNN(quant_stubs=True, **kw),
    "lenet5": lambda **kw: LeNet5(**kw),
    "mlp": lambda **kw: MLP(**kw),
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a course model by name: one of ``MODEL_NAMES``."""
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_NAMES)}.")
    return _BUILDERS[name](**kwargs)


# --- chapter 11: a tiny decoder-only transformer language model ------------------------------


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``qkv`` Linear → SDPA → ``proj`` Linear.

    ``forward(x, past)`` also returns the keys and values of all positions so far (the KV
    cache); with ``past`` given, ``x`` holds only the new positions (decode, one token).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}.")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            if t != 1:
                raise ValueError("with a KV cache, pass one new position at a time.")
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=past is None and t > 1)
        return self.proj(y.transpose(1, 2).reshape(b, t, c)), (k, v)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` (MLP: d → 4d → d, GELU)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class TinyGPT(nn.Module):
    """A byte-level decoder-only transformer (GPT-2 layout, learned positions, untied head).

    ``forward(idx)`` maps ``N×T`` token ids (T ≤ ``context``) to ``N×T×vocab`` next-token
    logits. ``prefill(idx)`` also returns the KV cache; ``decode_step(tok, cache)`` appends one
    token (``N×1``) using it. Parameters: about ``layers·12·dim² + 2·vocab·dim + context·dim``.
    """

    def __init__(
        self, vocab_size: int = 256, context: int = 128, dim: int = 128, layers: int = 4, heads: int = 4
    ) -> None:
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)

    def _run(self, idx: torch.Tensor, cache: list | None, start: int) -> tuple[torch.Tensor, list]:
        if start + idx.shape[1] > self.context:
            raise ValueError(f"sequence of {start + idx.shape[1]} tokens exceeds the context {self.context}.")
        x = self.tok_emb(idx) + self.pos_emb.weight[start : start + idx.shape[1]]
        new_cache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.head(self.ln_f(x)), new_cache

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self._run(idx, None, 0)[0]

    def prefill(self, idx: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Logits of every position and the KV cache (one ``(k, v)`` pair per block)."""
        return self._run(idx, None, 0)

    def decode_step(self, tok: torch.Tensor, cache: list) -> tuple[torch.Tensor, list]:
        """Logits for one new token per sequence (``tok``: N×1) and the extended cache."""
        return self._run(tok, cache, cache[0][0].shape[2])


# --- chapter 10: a small residual network (torchvision's BasicBlock) -------------------------


class ResNetMini(nn.Module):
    """resnet18's layout at MNIST scale: stem Conv3×3 stride 2 (→w)-BN-ReLU, three torchvision ``BasicBlock``
    stages (w, 2w, 4w channels; strides 1, 2, 2; a 1×1 conv + BN ``downsample`` where the shape
    changes), global average pool, Linear(4w→10).

    Layer names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ``layer2.0.downsample.0``, ``fc``), so everything shown on it applies to ``resnet18``.
    """

    def __init__(
        self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, width: int = 16
    ) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        del image_size  # global pooling: any size ≥ 4 works
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            down = None
            if stride != 1 or cin != cout:
                down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            return nn.Sequential(BasicBlock(cin, cout, stride=stride, downsample=down))

        self.layer1 = stage(w, w, 1)
        self.layer2 = stage(w, 2 * w, 2)
        self.layer3 = stage(2 * w, 4 * w, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_BUILDERS["resnet_mini"] = lambda **kw: ResNetMini(**kw)
MODEL_NAMES = tuple(_BUILDERS)
__all__ += ["ResNetMini"]
