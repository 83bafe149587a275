"""The course models: a Conv-BN-ReLU CNN, the classic LeNet-5 and a small MLP.

All take ``N×C×S×S`` images (default 1×16×16 upsampled digits) and return 10 logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub

__all__ = ["CourseCNN", "LeNet5", "MLP", "build_model", "MODEL_NAMES"]


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
