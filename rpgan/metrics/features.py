"""Reference features of a data set, cached on disk, and the FID / PRD score of generated ones.

Pool3 features of the real images are computed once per data set, image size, channel count,
image count and the seed that chose the images, and cached as .npz under $RPGAN_CACHE/fid_stats:
`rpgan fid`, the sweeps and the evaluations during training read the same file.
"""

from __future__ import annotations

import re
from pathlib import Path

from rpgan.errors import UserError
from rpgan.io.atomic import atomic_write
from rpgan.io.remote import cache_root
from rpgan.metrics.frechet import frechet_distance, statistics
from rpgan.metrics.prd import PRD, compute_prd

import numpy as np
import torch


def stats_path(data: str, size: int, channels: int, n: int | None, seed: int) -> Path:
    """Default cache file of a data set's reference features: all its images (n None), or the n
    that `seed` chooses (reference_index), so another seed's choice is never read back."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", data).strip("_")
    count = "all" if n is None else f"{n}-seed{seed}"
    return cache_root() / "fid_stats" / f"{slug}-{size}px-{channels}ch-{count}.npz"


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


def score(gen: np.ndarray, ref: np.ndarray, seed: int, prd: bool = True) -> tuple[dict, PRD | None]:
    """FID of generated features gen [N, 2048] against reference features ref [M, 2048], and
    PRD's F_8 (recall) and F_1/8 (precision) on min(N, M) points of each (nan without prd)."""
    value = frechet_distance(*statistics(gen), *statistics(ref))
    row = {"n_generated": len(gen), "n_reference": len(ref), "fid": value, "prd_f8_recall": float("nan"),
           "prd_f1_8_precision": float("nan")}
    if not prd:
        return row, None
    k = min(len(gen), len(ref))  # PRD compares equally many points (reference code: enforce_balance)
    pick = np.random.default_rng(seed)
    result = compute_prd(gen[pick.permutation(len(gen))[:k]], ref[pick.permutation(len(ref))[:k]], seed=seed)
    return {**row, "prd_f8_recall": result.f_8, "prd_f1_8_precision": result.f_1_8}, result
