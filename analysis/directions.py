"""`rpgan directions`: learn latent directions (analysis.deformator) for one checkpoint on an
analysis worker (a Ray actor, on a GPU when the cluster has one), then show and rate them.

Writes, under the output directory:
  directions/           Parquet, one row per direction: reconstructor accuracy, semantic and
                        color spread of its traversals
  directions.pt         the directions [D, K] (orthonormal columns), the shift unit, the bucket
  directions.png        one row per direction: a latent shifted from -max to +max shift
  traversals/dir_K.png  per direction, a row per latent
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from analysis.deformator import Deformator, DirectionsConfig, accuracy, train_directions, traversals
from analysis.distances import color_histograms, color_spread, semantic_spread
from analysis.fanout import AnalysisWorker, Fanout
from analysis.fid import image_features
from analysis.job import Job, open_job
from analysis.results import table
from rpgan.io.atomic import atomic_write
from rpgan.io.data import to_uint8
from rpgan.io.images import save_labeled_rows

import numpy as np
import pyarrow as pa
import torch

DIRECTIONS = table("directions", [
    ("bucket", pa.int64()), ("direction", pa.int64()), ("directions", pa.int64()),
    ("direction_steps", pa.int64()),
    ("final_loss", pa.float64()), ("accuracy", pa.float64()), ("semantic_spread", pa.float64()),
    ("color_spread", pa.float64())])
SHOWN = 7  # shifts per traversal row
LATENTS = 4  # latents traversed per direction, for the rows and the spreads
HELD_OUT = 50  # fresh pairs per direction for the accuracy


def learn(worker: AnalysisWorker, cfg: DirectionsConfig, held_out: int) -> tuple[Deformator, list[dict], torch.Tensor]:
    """Task: train latent directions (see analysis.deformator) on the worker's device: the
    deformator (on CPU), the loss history, and per-direction accuracy [K] on `held_out` fresh pairs."""
    deformator, reconstructor, history = train_directions(worker.generator, cfg)
    per_direction = accuracy(worker.generator, deformator, reconstructor, cfg, held_out, cfg.seed + 1)
    return deformator.cpu(), history, per_direction.cpu()


def directions(ckpt: Path | str, out: Path | str | None, cfg: DirectionsConfig, fan: Fanout) -> dict[str, str]:
    """Train and evaluate where `fan` says (one worker), then draw and rate; returns where each
    file went, by name."""
    with open_job(ckpt, out, weights=fan.generator_weights) as job:
        cfg.validate(len(job.generator.buckets))
        with fan.holding(job.ckpt):  # training and traversal features on the same worker
            return job.finish(_directions(job, cfg, fan))


def _directions(job: Job, cfg: DirectionsConfig, fan: Fanout) -> dict[str, Path]:
    generator, out, ckpt = job.generator, job.out, job.ckpt
    [(deformator, history, per_direction)] = fan.run([(learn, (cfg, HELD_OUT * cfg.directions))], ckpt,
                                                     label="directions training")

    paths, z = generator.sample_latent(LATENTS, torch.Generator().manual_seed(cfg.seed + 2))
    shifts = torch.linspace(-cfg.max_shift, cfg.max_shift, SHOWN)
    images = traversals(generator, deformator, cfg.bucket, paths, z, shifts)  # [K, B, T, C, S, S]
    k, b, t = images.shape[:3]
    flat = to_uint8(images.flatten(0, 2))
    feats = torch.from_numpy(np.concatenate(fan.run([(image_features, (flat,))], None, label="traversal")))
    semantic = semantic_spread(feats.view(k, b, t, -1)).mean(1)  # over the shifts of a latent, then latents
    color = color_spread(color_histograms(flat).view(k, b, t, 3, -1)).mean((1, 2))

    ctx = job.context(dataclasses.asdict(cfg), cfg.seed)
    rows = [{"bucket": cfg.bucket, "direction": i, "directions": k, "direction_steps": cfg.steps,
             "final_loss": history[-1]["loss"], "accuracy": float(per_direction[i]),
             "semantic_spread": float(semantic[i]), "color_spread": float(color[i])} for i in range(k)]
    written = {"table": DIRECTIONS.write(out, ctx, rows)}
    state = {"directions": deformator.directions().detach(), "scale": torch.tensor(deformator.scale),
             "bucket": torch.tensor(cfg.bucket)}
    written["weights"] = atomic_write(out / "directions.pt", lambda tmp: torch.save(state, tmp))
    written["grid"] = save_labeled_rows([(f"dir {i}", images[i, 0]) for i in range(k)], out / "directions.png")
    for i in range(k):
        written[f"dir_{i}"] = save_labeled_rows([(f"latent {j}", images[i, j]) for j in range(b)],
                                                out / "traversals" / f"dir_{i}.png")
    return written
