"""Image data sets, addressed by a spec string.

- `digits`: scikit-learn's 8x8 digits (shipped inside scikit-learn, so always offline),
  upsampled and randomly colored like the paper's colored MNIST; `digits-gray` uncolored.
- `mnist`, `colored-mnist`, `cifar10`: torchvision, downloaded when the network allows.
- `npz:PATH`: uint8 arrays [N, H, W] or [N, H, W, C] (key `x_train`, `x` or the only array).
- `folder:PATH`: every image file below PATH (Anime Faces, LSUN, CelebA ...), decoded lazily.

Every source is resized to the model's image size and channel count and yields uint8 batches
[B, C, S, S]; `to_float` maps them to [-1, 1].
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rpgan.errors import UserError

if TYPE_CHECKING:
    from rpgan.config import RunConfig

DATA_SPECS = ("digits", "digits-gray", "mnist", "colored-mnist", "cifar10", "npz:PATH", "folder:PATH")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
COLOR_SEED = 0  # colors are part of a colored data set's definition: the same everywhere


class ImageData:
    """A data set held in memory as uint8 [N, C, S, S], with optional integer labels [N]."""

    def __init__(self, images: Tensor, labels: Tensor | None = None):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: Tensor) -> Tensor:
        """uint8 [B, C, S, S] for LongTensor indices [B]."""
        return self.images[indices]


class FolderData(ImageData):
    """Image files decoded on demand: large folders (LSUN) never sit in memory whole."""

    def __init__(self, files: Sequence[Path], size: int, channels: int):
        self.files, self.size, self.channels, self.labels = list(files), size, channels, None
        self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> Tensor:
        from PIL import Image

        with Image.open(self.files[i]) as img:
            img = img.convert("RGB" if self.channels == 3 else "L")
            side = min(img.size)  # center crop to a square, then resize
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((self.size, self.size), Image.BICUBIC)
            arr = np.array(img, dtype=np.uint8)
        return torch.from_numpy(arr.reshape(self.size, self.size, -1)).permute(2, 0, 1)

    def batch(self, indices: Tensor) -> Tensor:
        return torch.stack(list(self._pool.map(self._load, indices.tolist())))


def to_float(images: Tensor) -> Tensor:
    """uint8 [B, C, S, S] in 0..255 -> float [B, C, S, S] in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(images: Tensor) -> Tensor:
    """float [B, C, S, S] in [-1, 1] -> uint8 [B, C, S, S] (rounded, clamped)."""
    return ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def load_data(spec: str, size: int, channels: int) -> ImageData:
    """The data set named by `spec`, at size x size with `channels` channels (1 or 3)."""
    root = Path(os.environ.get("RPGAN_DATA", Path.home() / ".cache" / "rpgan" / "data"))
    if spec in ("digits", "digits-gray"):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8)
        labels = torch.from_numpy(digits.target)
        return _conform(images, labels, size, channels, colored=spec == "digits")
    if spec in ("mnist", "colored-mnist"):
        ds = _download("MNIST", root)
        return _conform(ds.data, ds.targets, size, channels, colored=spec == "colored-mnist")
    if spec == "cifar10":
        ds = _download("CIFAR10", root)
        return _conform(torch.from_numpy(ds.data), torch.tensor(ds.targets), size, channels)
    if spec.startswith("npz:"):
        images, labels = _read_npz(Path(spec[4:]))
        return _conform(images, labels, size, channels)
    if spec.startswith("folder:"):
        folder = Path(spec[7:])
        if not folder.is_dir():
            raise UserError(f"--data {spec}: {folder} is not a directory of images")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"--data {spec}: no .png/.jpg/.webp/.bmp images below {folder}")
        return FolderData(files, size, channels)
    raise UserError(f"unknown data set {spec!r}; choose one of {', '.join(DATA_SPECS)}")


def _download(name: str, root: Path):
    import torchvision

    try:
        return getattr(torchvision.datasets, name)(str(root), train=True, download=True)
    except Exception as e:  # no network: URLError, RuntimeError, socket errors ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"could not download {name} to {root} ({reason}); offline, use --data npz:PATH or "
            f"folder:PATH with local images, or --data digits (embedded)"
        ) from None


def _read_npz(path: Path) -> tuple[Tensor, Tensor | None]:
    try:
        with np.load(path) as arrays:
            names = [k for k in ("x_train", "x") if k in arrays] or list(arrays.keys())
            if len(names) != 1 and names[0] not in ("x_train", "x"):
                raise UserError(f"--data npz:{path}: name the image array x_train or x (found {names})")
            images = arrays[names[0]]
            label_name = {"x_train": "y_train", "x": "y"}.get(names[0], "")
            labels = arrays[label_name] if label_name in arrays else None
    except (OSError, ValueError) as e:
        raise UserError(f"--data npz:{path}: cannot read it as .npz ({e})") from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise UserError(f"--data npz:{path}: want uint8 [N,H,W] or [N,H,W,C], got {images.dtype} {images.shape}")
    return torch.from_numpy(images), None if labels is None else torch.from_numpy(labels.astype(np.int64))


def _conform(images: Tensor, labels: Tensor | None, size: int, channels: int, colored: bool = False) -> ImageData:
    """uint8 [N, H, W] or [N, H, W, C] -> uint8 [N, channels, size, size]."""
    x = images.unsqueeze(-1) if images.dim() == 3 else images
    x = x.permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if colored:
        x = x * _random_colors(len(x)).view(-1, 3, 1, 1)  # white digit -> colored digit on black
    if x.shape[1] == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return ImageData(x.round().clamp(0, 255).to(torch.uint8).contiguous(), labels)


def _random_colors(n: int) -> Tensor:
    """n bright random colors [n, 3] in [0, 1]: uniform hue, saturation 0.6-1, full value."""
    rng = np.random.default_rng(COLOR_SEED)
    hues, sats = rng.random(n), rng.uniform(0.6, 1.0, n)
    return torch.tensor([colorsys.hsv_to_rgb(h, s, 1.0) for h, s in zip(hues, sats)], dtype=torch.float32)


def parse_labels(text: str) -> list[int]:
    """`"0-6"`, `"1,3,5"` or `"0-2,7"` -> sorted label list."""
    labels: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            labels.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise UserError(f"--labels takes ranges like 0-6 or lists like 1,3,5, got {text!r}") from None
    return sorted(labels)


def select_labels(data: ImageData, text: str) -> ImageData:
    """The images whose label is in `text` (all when text is empty)."""
    if not text:
        return data
    if data.labels is None:
        raise UserError("--labels needs a labelled data set (digits, mnist, colored-mnist, cifar10, npz with y)")
    keep = torch.isin(data.labels, torch.tensor(parse_labels(text)))
    if not keep.any():
        raise UserError(f"--labels {text}: no image has these labels")
    return ImageData(data.images[keep], data.labels[keep])


def training_images(config: RunConfig) -> ImageData:
    """The training set of a run: its data set at the model's size and channels, its labels only."""
    return select_labels(load_data(config.data, config.model.image_size, config.model.channels), config.labels)
