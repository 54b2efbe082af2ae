"""Reference features of a data set, cached on disk, and the score of generated ones against them.

Pool3 features of the real images are computed once per data set (its files as they are),
classes kept, image size, channel count, image count, the seed that chose the images and the
Inception weights, and cached as .npz under $RPGAN_CACHE/fid_stats: `rpgan fid`, the sweeps and
the evaluations during training read the same file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from rpgan.errors import UserError
from rpgan.io.atomic import atomic_write
from rpgan.io.data import data_identity
from rpgan.io.remote import cache_root
from rpgan.metrics.frechet import statistics
from rpgan.metrics.inception import MEMORY_FORMAT
from rpgan.metrics.quality import METRICS, measure

import numpy as np
import torch


def stats_path(data: str, size: int, channels: int, n: int | None, seed: int, weights: str,
               labels: str = "") -> Path:
    """Cache file of a data set's reference features: all its images (n None), or the n that
    `seed` chooses (reference_index), of the classes `labels` keeps ("": all), embedded by
    the Inception weights whose identity is `weights` (rpgan.metrics.inception.weights_identity).
    The name shows the data set and shape and ends with a hash of all of it and of the data's
    files (rpgan.io.data.data_identity): other weights, or data rewritten at the same path, are
    never read back."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", data).strip("_")
    count = "all" if n is None else f"{n}-seed{seed}"
    layout = MEMORY_FORMAT  # features of another layout differ by float rounding
    key = hashlib.sha1(f"{data_identity(data)}|{labels}|{size}|{channels}|{count}|{weights}|{layout}".encode())
    key = key.hexdigest()
    return cache_root() / "fid_stats" / f"{slug}-{size}px-{channels}ch-{count}-{key[:12]}.npz"


def reference_index(n_images: int, n: int | None, seed: int) -> torch.Tensor:
    """Which real images are the reference: all of them, or n chosen by `seed`."""
    if n is None or n >= n_images:
        return torch.arange(n_images)
    return torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))[:n]


def read_cached(path: Path) -> np.ndarray | None:
    """Cached features [N, 2048] at `path`, None if there is no file; UserError if unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            feats = f["features"]
        if feats.dtype.kind != "f" or feats.ndim != 2 or len(feats) < 2:
            raise ValueError(f"features {feats.dtype} {feats.shape}, not [N >= 2, 2048] floats")
        return feats
    except Exception:  # OSError, ValueError, KeyError, BadZipFile, zlib.error (truncated), EOFError ...
        raise UserError(f"FID statistics {path} are unreadable; delete the file to recompute them") from None


def write_cached(path: Path, feats: np.ndarray) -> None:
    """Cache features [N, 2048] (with their mean and covariance) at `path`, atomically."""
    mu, sigma = statistics(feats)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, features=feats.astype(np.float32), mu=mu, sigma=sigma)

    atomic_write(path, save)


@dataclass(frozen=True)
class Reference:
    """Reference features [M, 2048] and `key`, the name of their cache file (stats_path): what
    they are (data, classes, shape, images chosen, embedding weights)."""

    features: np.ndarray
    key: str


def score(gen: np.ndarray, ref: Reference, seed: int, asked: frozenset[str] = frozenset()) -> tuple[dict, dict]:
    """The quality of generated features gen [N, 2048] against the reference: every registered
    metric's columns (rpgan.metrics.quality; the optional ones when `asked`, NaN otherwise),
    n_generated, n_reference and `measurement`, what was measured (`measurement_id`); and each
    measured metric's extra (PRD's curve) by name. The one measurement of training's
    evaluation, `rpgan fid` and the sweep trials."""
    row, extras = measure(gen, ref.features, seed, asked)
    return {"n_generated": len(gen), "n_reference": len(ref.features), **row,
            "measurement": measurement_id(ref, len(gen), seed, asked)}, extras


def measurement_id(ref: Reference, n: int, seed: int, asked: frozenset[str] = frozenset()) -> str:
    """What a measurement of one checkpoint is: the reference, the n generated images (the
    paths that `seed` draws, Generator.sample_latent) and the metrics measured. Two
    measurements of the same checkpoint with the same id have the same numbers, so a recorded
    one is reused instead of measured again (sweeps.trial)."""
    measured = [name for name, metric in METRICS.items() if metric.always or name in asked]
    return f"{ref.key}|{n}@{seed}|{'+'.join(measured)}"
