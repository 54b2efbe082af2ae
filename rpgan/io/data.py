"""Image data sets, addressed by a spec string.

- `digits`: scikit-learn's 8x8 digits (shipped inside scikit-learn, so always offline),
  upsampled and randomly colored like the paper's colored MNIST; `digits-gray` uncolored.
- `mnist`, `colored-mnist`, `cifar10`: torchvision, downloaded when the network allows.
- `npz:PATH`: uint8 arrays [N, H, W] or [N, H, W, C] (key `x_train`, `x` or the only array).
- `folder:PATH`: every image file below PATH (Anime Faces, LSUN, CelebA ...), decoded lazily.
  Every file is checked when the folder is loaded (its header; PNG chunks too, no pixels
  decoded): files PIL cannot read are skipped, counted in one line on stderr. One whose header
  is fine but whose pixels are cut (a truncated JPEG) ends the run with one line naming it.

Every source is resized to the model's image size and channel count and yields uint8 batches
[B, C, S, S]; `to_float` maps them to [-1, 1].
"""

from __future__ import annotations

import colorsys
import gzip
import hashlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from rpgan.errors import UserError

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from rpgan.config import RunConfig

NAMED = {"digits": 10, "digits-gray": 10, "mnist": 10, "colored-mnist": 10, "cifar10": 10}  # their classes (labels)
DATA_SPECS = (*NAMED, "npz:PATH", "folder:PATH")
MAX_LABEL = 100_000  # --labels: class labels are 0..MAX_LABEL
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
COLOR_SEED = 0  # colors are part of a colored data set's definition: the same everywhere
NAMED_VERSION = 1  # of the named data sets' definitions (source, colors): raise it when one changes


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
        self._pool: ThreadPoolExecutor | None = None  # made where it is used: a copy sent to a process has none

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Tensor:
        """Image i: uint8 [C, S, S], center-cropped to a square and resized."""
        from PIL import Image

        try:
            with Image.open(self.files[i]) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
                side = min(img.size)  # center crop to a square, then resize
                left, top = (img.width - side) // 2, (img.height - side) // 2
                img = img.crop((left, top, left + side, top + side)).resize((self.size, self.size), Image.BICUBIC)
                arr = np.array(img, dtype=np.uint8)
        except Exception as e:  # a file whose header was fine but whose pixels are not (truncated JPEG ...)
            raise UserError(f"image {self.files[i]} cannot be decoded ({_reason(e)}); delete it and resume the "
                            "run (--resume)") from None
        return torch.from_numpy(arr.reshape(self.size, self.size, -1)).permute(2, 0, 1)

    def batch(self, indices: Tensor) -> Tensor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        return torch.stack(list(self._pool.map(self.load, indices.tolist())))


def to_float(images: Tensor) -> Tensor:
    """uint8 [B, C, S, S] in 0..255 -> float [B, C, S, S] in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(images: Tensor) -> Tensor:
    """float [B, C, S, S] in [-1, 1] -> uint8 [B, C, S, S] (rounded, clamped)."""
    return ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def check_spec(spec: str) -> None:
    """Refuse a data set that `load_data` would refuse for its name alone (unknown, a path missing),
    before a command starts any work; reading it may still fail later."""
    if spec in NAMED:
        return
    kind, _, where = spec.partition(":")
    if kind in ("npz", "folder") and not where:
        raise UserError(f"--data {spec} needs a path, like {kind}:PATH")
    if kind == "npz" and not Path(where).is_file():
        raise UserError(f"--data {spec}: {where} is not a file; give an .npz of images (np.savez(PATH, x=images))")
    if kind == "folder" and not Path(where).is_dir():
        raise UserError(f"--data {spec}: {where} is not a directory of images")
    if kind not in ("npz", "folder"):
        raise UserError(f"unknown data set {spec!r}; choose one of {', '.join(DATA_SPECS)}")


def data_identity(spec: str) -> str:
    """What a data set's cached derivatives (reference features, classifiers) depend on: a named
    set's name and version; for `npz:` the file's resolved path, size and modification time; for
    `folder:` those of every image file below it. Rewriting the files at the same path changes it."""
    kind, _, where = spec.partition(":")
    if kind not in ("npz", "folder") or not Path(where).exists():
        return f"{spec}|v{NAMED_VERSION}"
    root = Path(where).resolve()
    files = [root] if kind == "npz" else sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    stamps = hashlib.sha1()
    for f in files:
        info = f.stat()
        stamps.update(f"{f.relative_to(root) if kind == 'folder' else f}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return f"{kind}:{root}|{stamps.hexdigest()}"


def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits: images [1797, 8, 8] float64 in 0..16 and labels
    [1797] int, as `sklearn.datasets.load_digits()` gives them, read from the file it reads
    without importing scikit-learn: that import takes about a second, in every process that
    trains or measures on the embedded default (each Ray Train worker and sweep trial)."""
    package = Path(next(iter(importlib.util.find_spec("sklearn").submodule_search_locations)))
    with gzip.open(package / "datasets" / "data" / "digits.csv.gz", "rt", encoding="utf-8") as f:
        rows = np.loadtxt(f, delimiter=",")
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)


def load_data(spec: str, size: int, channels: int) -> ImageData:
    """The data set named by `spec`, at size x size with `channels` channels (1 or 3)."""
    check_spec(spec)
    root = Path(os.environ.get("RPGAN_DATA", Path.home() / ".cache" / "rpgan" / "data"))
    if spec in ("digits", "digits-gray"):
        pixels, digit = embedded_digits()
        images = torch.from_numpy(pixels * (255 / 16)).round().to(torch.uint8)
        return _conform(images, torch.from_numpy(digit), size, channels, colored=spec == "digits")
    if spec in ("mnist", "colored-mnist"):
        ds = _download("MNIST", root)
        return _conform(ds.data, ds.targets, size, channels, colored=spec == "colored-mnist")
    if spec == "cifar10":
        ds = _download("CIFAR10", root)
        return _conform(torch.from_numpy(ds.data), torch.tensor(ds.targets), size, channels)
    kind, _, where = spec.partition(":")
    if kind == "npz":
        images, labels = _read_npz(Path(where))
        return _conform(images, labels, size, channels)
    if kind == "folder":
        folder = Path(where)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"--data {spec}: no .png/.jpg/.webp/.bmp images below {folder}")
        return FolderData(_readable_images(spec, files), size, channels)
    raise AssertionError(spec)  # check_spec refused it


def _reason(e: Exception) -> str:
    return " ".join(str(e).split())[:160] or type(e).__name__


def _unreadable(file: Path) -> str | None:
    """Why PIL cannot read the file's header (or, for PNG, its chunks), or None if it can. Cheap:
    PIL reads headers, and `verify` checks PNG chunk checksums without decoding any pixels."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            img.verify()
    except Exception as e:  # UnidentifiedImageError, truncated or broken chunks, decompression bombs ...
        return _reason(e)
    return None


def _readable_images(spec: str, files: list[Path]) -> list[Path]:
    """The files PIL can read; the others are skipped with one line on stderr that counts them
    and names the first. Refuses a folder with no readable image at all."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        problems = list(pool.map(_unreadable, files))
    bad = [(f, why) for f, why in zip(files, problems) if why]
    if len(bad) == len(files):
        raise UserError(f"--data {spec}: none of its {len(files)} image files is readable (first: {bad[0][0]}: "
                        f"{bad[0][1]})")
    if bad:
        print(f"rpgan: --data {spec}: skipping {len(bad)} of {len(files)} image files that are not readable images "
              f"(first: {bad[0][0]}: {bad[0][1]})", file=sys.stderr)
    return [f for f, why in zip(files, problems) if not why]


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
    """Images uint8 [N, H, W(, C)] and labels [N] (or None) of an .npz, every shape checked."""
    where = f"--data npz:{path}"
    try:
        loaded = np.load(path)  # allow_pickle=False: an object array is a ValueError, not code run
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise UserError(f"{where}: this is one .npy array; save images (and labels) with "
                            "np.savez(PATH, x=images, y=labels)")
        with loaded as arrays:
            names = [k for k in ("x_train", "x") if k in arrays] or list(arrays.keys())
            if len(names) != 1 and (not names or names[0] not in ("x_train", "x")):
                raise UserError(f"{where}: name the image array x_train or x (found {names})")
            images = arrays[names[0]]
            label_name = {"x_train": "y_train", "x": "y"}.get(names[0], "")
            labels = arrays[label_name] if label_name in arrays else None
    except UserError:
        raise
    except Exception as e:  # OSError, ValueError (pickled data), BadZipFile, zlib.error, EOFError (truncated) ...
        raise UserError(f"{where}: cannot read it as .npz ({_reason(e)})") from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise UserError(f"{where}: want uint8 [N,H,W] or [N,H,W,C], got {images.dtype} {images.shape}")
    n, h, w = images.shape[:3]
    if n == 0 or h == 0 or w == 0:
        raise UserError(f"{where}: holds no images (shape {images.shape})")
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise UserError(f"{where}: images have {images.shape[3]} channels; want 1 (gray) or 3 (RGB), channels "
                        f"last: [N,H,W] or [N,H,W,C], got {images.shape}")
    if h != w:
        raise UserError(f"{where}: images are {h}x{w}, not square; crop or resize them to squares first")
    if labels is not None:
        if labels.dtype.kind not in "iu" or labels.shape != (n,):
            raise UserError(f"{where}: {label_name} must hold one integer label per image ({n}), got "
                            f"{labels.dtype} {labels.shape}")
        labels = torch.from_numpy(labels.astype(np.int64))
    return torch.from_numpy(images), labels


def _conform(images: Tensor, labels: Tensor | None, size: int, channels: int, colored: bool = False) -> ImageData:
    """uint8 [N, H, W] or [N, H, W, C] -> uint8 [N, channels, size, size]."""
    x = images.unsqueeze(-1) if images.dim() == 3 else images
    x = x.permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
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
    """`"0-6"`, `"1,3,5"` or `"0-2,7"` -> sorted label list (labels 0..MAX_LABEL, ranges low-high)."""
    labels: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi if dash else lo)  # "0-" is not a range: int("") refuses it
        except ValueError:
            raise UserError(f"--labels takes ranges like 0-6 or lists like 1,3,5, got {text!r}") from None
        if a > b:
            raise UserError(f"--labels {text}: the range {part.strip()} runs backwards; write {b}-{a}")
        if b > MAX_LABEL:
            raise UserError(f"--labels {text}: labels are 0..{MAX_LABEL}, got {b}")
        labels.update(range(a, b + 1))
    return sorted(labels)


def check_labels(spec: str, text: str) -> None:
    """Refuse `--labels text` that cannot select anything, before any data is loaded: bad syntax,
    or (for a named data set, whose classes are known) labels it does not have."""
    if not text:
        return
    wanted = parse_labels(text)
    if spec in NAMED and wanted[-1] >= NAMED[spec]:
        raise UserError(f"--labels {text}: {spec} has labels 0..{NAMED[spec] - 1}, not {wanted[-1]}")


def select_labels(data: ImageData, text: str) -> ImageData:
    """The images whose label is in `text` (all when text is empty); every label must occur."""
    if not text:
        return data
    if data.labels is None:
        raise UserError("--labels needs a labelled data set (digits, mnist, colored-mnist, cifar10, npz with y)")
    wanted = parse_labels(text)
    present = set(data.labels.unique().tolist())
    missing = [label for label in wanted if label not in present]
    if missing:
        have = sorted(present)
        shown = ",".join(map(str, have)) if len(have) <= 20 else f"{have[0]}..{have[-1]}"
        raise UserError(f"--labels {text}: no image has label {', '.join(map(str, missing[:5]))}"
                        f"{' ...' if len(missing) > 5 else ''}; the data's labels are {shown}")
    keep = torch.isin(data.labels, torch.tensor(wanted))
    return ImageData(data.images[keep], data.labels[keep])


def training_images(config: RunConfig) -> ImageData:
    """The training set of a run: its data set at the model's size and channels, its labels only."""
    return select_labels(load_data(config.data, config.model.image_size, config.model.channels), config.labels)
