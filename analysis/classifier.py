"""A small image classifier trained on a data set's own labels: it labels generated digits and
gives `rpgan analyze --embedding classifier` its semantic features.

Used to measure incremental learning (paper section 4.3) and what compression costs, as the
paper could not: which digits a generator actually draws. As an embedding it sees gray images
(the mean of the channels), each standardized, so its features carry what the labels name,
not the color: on colored digits that is the digit, which Inception on upsampled 16x16 images
is not (it reacts to color as much as to the digit).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from rpgan.errors import UserError
from rpgan.io.atomic import atomic_write
from rpgan.io.data import ImageData, data_identity, load_data, to_float
from rpgan.io.remote import cache_root

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VERSION = 2  # of the embedding's classifier (architecture, preprocessing): part of its cache key
STEPS = 1500  # Adam steps of batch 128: over 99% test accuracy on MNIST (bench/incremental.py)


class ImageClassifier(nn.Module):
    """Two conv layers and a linear head for gray images [N, 1, S, S] in [-1, 1]. With
    `standardize`, each image is first scaled to zero mean and unit std: a digit colored on
    black is the white digit times its color, so in gray its color is a factor, which this
    removes (and brightness and contrast with it, on natural images)."""

    def __init__(self, size: int, classes: int = 10, standardize: bool = False):
        super().__init__()
        self.standardize = standardize
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(64 * (size // 4) ** 2, classes)

    def embed(self, x: Tensor) -> Tensor:
        """x: [N, 1, S, S] -> the penultimate features [N, 64 * (S/4)^2]."""
        if self.standardize:
            x = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-6)
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, 1, S, S] -> logits [N, classes]."""
        return self.head(self.embed(x))


def gray(images: Tensor) -> Tensor:
    """uint8 [N, C, S, S] -> float [N, 1, S, S] in [-1, 1], the mean of the channels."""
    return to_float(images).mean(1, keepdim=True)


def train_classifier(data: ImageData, steps: int = STEPS, batch: int = 128, seed: int = 0,
                     standardize: bool = False) -> ImageClassifier:
    """Adam on random batches of `data` (uint8 images with labels, seen in gray)."""
    if data.labels is None:
        raise UserError("this data set has no labels to train a classifier on; use --embedding inception, or "
                        "npz data with labels (y)")
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model = ImageClassifier(data.images.shape[-1], classes=int(data.labels.max()) + 1, standardize=standardize)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=rng)
        loss = F.cross_entropy(model(gray(data.images[idx])), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def classify(model: ImageClassifier, images: Tensor, batch: int = 1024) -> Tensor:
    """Predicted labels [N] for float images [N, 1, S, S] in [-1, 1]."""
    return torch.cat([model(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])


@torch.no_grad()
def classifier_features(model: ImageClassifier, images: Tensor, batch: int = 1024) -> Tensor:
    """The classifier's penultimate features [N, 64 * (S/4)^2] of uint8 images [N, C, S, S]."""
    return torch.cat([model.embed(gray(images[i : i + batch])) for i in range(0, len(images), batch)])


def cached_classifier(data: str, size: int, channels: int, seed: int = 0) -> tuple[dict[str, Tensor], Path]:
    """The state dict of the classifier of data set `data` (at size x size), and its cache file:
    read from $RPGAN_CACHE/classifiers when there (weights only), else trained and written."""
    key = hashlib.sha1(f"{data_identity(data)}|{size}|{channels}|{seed}|{STEPS}|{VERSION}".encode()).hexdigest()[:16]
    path = cache_root() / "classifiers" / f"{key}.pt"
    if path.is_file():
        try:
            state = torch.load(path, weights_only=True)
            load_classifier(state, size)  # a file of other tensors is as unusable as a truncated one
            return state, path
        except Exception:  # truncated, not a torch file, pickled code refused, other tensors ...
            raise UserError(f"cached classifier {path} is unreadable; delete it to train it again") from None
    with torch.random.fork_rng():  # training seeds torch; the caller's random state stays as it was
        model = train_classifier(load_data(data, size, channels), steps=STEPS, seed=seed, standardize=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return model.state_dict(), path


def load_classifier(state: dict[str, Tensor], size: int) -> ImageClassifier:
    """The embedding's classifier from `cached_classifier`'s state dict."""
    model = ImageClassifier(size, classes=state["head.weight"].shape[0], standardize=True)
    model.load_state_dict(state)
    return model.eval()
