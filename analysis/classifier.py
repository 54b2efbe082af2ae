"""A small digit classifier, trained on real MNIST, that labels generated digits.

Used to measure incremental learning (paper section 4.3) and what compression costs, as the
paper could not: which digits a generator actually draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rpgan.io.data import ImageData, to_float


class DigitClassifier(nn.Module):
    """Two conv layers and a linear head for 1-channel digits [N, 1, S, S] in [-1, 1]."""

    def __init__(self, size: int, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(64 * (size // 4) ** 2, classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, 1, S, S] -> logits [N, classes]."""
        return self.head(self.features(x).flatten(1))


def train_classifier(data: ImageData, steps: int = 1500, batch: int = 128, seed: int = 0) -> DigitClassifier:
    """Adam on random batches of `data` (uint8 images with labels)."""
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model = DigitClassifier(data.images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=rng)
        loss = F.cross_entropy(model(to_float(data.images[idx])), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def classify(model: DigitClassifier, images: Tensor, batch: int = 1024) -> Tensor:
    """Predicted labels [N] for float images [N, 1, S, S] in [-1, 1]."""
    return torch.cat([model(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])
