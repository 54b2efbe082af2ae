"""`rpgan fid` and `rpgan fid-stats`: FID (Heusel 2017) and PRD (Sajjadi 2018) of a checkpoint.

Reference features (pool3 of the real images) are computed once per data set, image size and
count, and cached (rpgan.metrics.features); generated features are computed on the Ray workers
in chunks.
"""

from __future__ import annotations

from pathlib import Path

from analysis.fanout import AnalysisWorker, Fanout
from analysis.job import open_job
from analysis.results import table
from rpgan.errors import UserError
from rpgan.io.data import load_data, to_uint8
from rpgan.io.images import render
from rpgan.metrics.features import Reference, read_cached, reference_index, score, stats_path, write_cached
from rpgan.metrics.inception import weights_identity
from rpgan.metrics.quality import COLUMNS
from rpgan.model.networks import Generator

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

QUALITY = table("quality", [
    ("reference", pa.string()), ("n_generated", pa.int64()), ("n_reference", pa.int64()),
    *[(column, pa.float64()) for column in COLUMNS], ("measurement", pa.string())])
PRD_CURVE = table("prd_curve", [
    ("reference", pa.string()), ("angle_index", pa.int64()), ("prd_precision", pa.float64()),
    ("prd_recall", pa.float64())])


def image_features(worker: AnalysisWorker, images: Tensor) -> np.ndarray:
    """Task: features [N, 2048] of uint8 images [N, C, H, W]."""
    return worker.embed(images).numpy()


def sample_features(worker: AnalysisWorker, paths: Tensor, z: Tensor | None) -> np.ndarray:
    """Task: features [N, 2048] of the generator's images for paths [N, L] (and z [N, latent_dim])."""
    return worker.embed(to_uint8(render(worker.generator, paths, z))).numpy()


def reference_features(data: str, size: int, channels: int, n: int | None, fan: Fanout, seed: int = 0,
                       out: Path | None = None) -> tuple[Reference, Path]:
    """Pool3 features [N, 2048] of the real images (all, or n chosen by seed), read from the
    cache file when present, else computed on the workers and written there atomically; and
    that file."""
    path = Path(out) if out else stats_path(data, size, channels, n, seed, weights_identity(fan.inception_weights))
    feats = read_cached(path)
    if feats is not None:
        return Reference(feats, path.name), path
    images = load_data(data, size, channels)
    index = reference_index(len(images), n, seed)
    calls = [(image_features, (images.batch(index[i : i + fan.chunk]),)) for i in range(0, len(index), fan.chunk)]
    feats = np.concatenate(fan.run(calls, ckpt=None, label="real chunk"))
    write_cached(path, feats)
    return Reference(feats, path.name), path


def generated_features(generator: Generator, ckpt: Path | str, n: int, seed: int, fan: Fanout) -> np.ndarray:
    """Pool3 features [n, 2048] of n images of random paths drawn from `seed`; the workers
    render them with the generator of `ckpt` (the same as `generator`)."""
    paths, z = generator.sample_latent(n, torch.Generator().manual_seed(seed))
    calls = [(sample_features, (paths[i : i + fan.chunk], None if z is None else z[i : i + fan.chunk]))
             for i in range(0, n, fan.chunk)]
    return np.concatenate(fan.run(calls, ckpt=ckpt, label="sample chunk"))


def fid(ckpt: Path | str, n: int, seed: int, fan: Fanout, data: str | None = None, reference_n: int | None = None,
        stats: Path | None = None, out: Path | str | None = None, prd: bool = True) -> dict:
    """FID (and PRD) of n generated images against the data set's reference features; writes
    the `quality` and `prd_curve` tables and prd.png to `out` (default: the run's analysis/)."""
    if n < 2:
        raise UserError("--n must be at least 2 (FID needs a covariance)")
    with open_job(ckpt, out, fan.device, fan.generator_weights) as job:
        generator, config, out = job.generator, job.config, job.out
        data = data or config.data
        m = config.model
        with fan.holding(job.ckpt):  # both feature jobs on the same workers
            ref, ref_path = reference_features(data, m.image_size, m.channels, reference_n, fan, seed, stats)
            generated = generated_features(generator, job.ckpt, n, seed, fan)
        measured, extras = score(generated, ref, seed, frozenset({"prd"} if prd else ()))
        curve = extras.get("prd")
        row = {"reference": data, **measured}
        ctx = job.context({"n": n, "seed": seed, "data": data, "reference_n": reference_n, "prd": prd}, seed)
        written = {}
        if curve is not None:
            rows = [{"reference": data, "angle_index": i, "prd_precision": float(p), "prd_recall": float(r)}
                    for i, (p, r) in enumerate(zip(curve.precision, curve.recall))]
            written["prd_curve"] = PRD_CURVE.write(out, ctx, rows)
            k = min(measured["n_generated"], measured["n_reference"])
            from analysis.plots import plot_prd  # matplotlib: 0.3 s a sweep trial (no plot) does not pay

            written["prd_plot"] = plot_prd({f"{config.preset or m.arch} step {ctx['step']}": (curve.precision,
                                            curve.recall)}, out / "prd.png", f"PRD against {data} ({k} vs {k})")
        written["quality"] = QUALITY.write(out, ctx, [row])
        return {**row, "written": {"stats": str(ref_path), **job.finish(written)}}
