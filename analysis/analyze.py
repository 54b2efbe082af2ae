"""`rpgan analyze`: the paper's section 4.1 for one checkpoint.

Writes, under the output directory:
  frozen_paths/path_*.png        Figure 3: per base path, a row per bucket with that bucket unfrozen
  traversals/sample_*.png        instead, for an EigenGAN: per base sample, a row per layer x dimension
  noise_injection/noise-S_*.png  Figure 5 (--noise-injection): per base sample and noise scale S,
                                 a row per layer with that layer's weights perturbed
  responsibility/                Parquet, one row per evaluation x layer x distance
  responsibility_summary/        Parquet, one row per method x layer x distance (mean, std)
  responsibility.png             Figure 4: mean D_{l->1} per bucket with std, semantic and color
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from analysis.classifier import cached_classifier, classifier_features, load_classifier
from analysis.fanout import AnalysisWorker, Fanout
from analysis.job import open_job
from analysis.limits import MAX_EVALUATIONS, MAX_GRIDS, Embedding
from analysis.responsibility import Draws, distinct_images, draw, evaluation_rows, save_noise_grid, variations
from analysis.results import table
from rpgan.errors import UserError
from rpgan.io.images import save_layer_grid
from rpgan.model.eigengan import EigenGenerator
from rpgan.model.networks import Generator

import pandas as pd
import pyarrow as pa
import torch

# per method x layer x distance; also a sweep's per-trial rows (sweeps.results)
RESPONSIBILITY_SUMMARY = [
    ("method", pa.string()), ("embedding", pa.string()), ("layer", pa.int64()), ("distance", pa.string()),
    ("evaluations", pa.int64()),
    ("ratio_mean", pa.float64()), ("ratio_std", pa.float64()), ("spread_mean", pa.float64()),
    ("spread_std", pa.float64())]
RESPONSIBILITY = table("responsibility", [
    ("method", pa.string()), ("embedding", pa.string()), ("evaluation", pa.int64()), ("layer", pa.int64()),
    ("distance", pa.string()),
    ("spread", pa.float64()), ("ratio", pa.float64())])
SUMMARY = table("responsibility_summary", RESPONSIBILITY_SUMMARY)


@dataclass(frozen=True)
class AnalyzeConfig:
    evaluations: int = 100  # the paper averages D_{l->1} over 100 random base paths
    seed: int = 0
    grids: int = 4  # Figure 3 PNGs, one per base path
    per_bucket: int = 10  # blocks shown per bucket in a Figure 3 row (EigenGAN: steps per traversal)
    noise_scales: tuple[float, ...] = ()  # noise injection: W + scale * std(W) * N(0, 1) per layer
    chunk: int = 10  # evaluations per task sent to a worker
    embedding: Embedding = "inception"  # the features of the semantic distance (analysis.classifier)

    def validate(self) -> AnalyzeConfig:
        """Return self, or raise UserError: counts are bounded so that a typo allocates nothing."""
        if self.evaluations < 1 or self.chunk < 1 or self.grids < 0 or self.per_bucket < 1:
            raise UserError("--evaluations, --chunk and --per-bucket must be >= 1 and --grids >= 0")
        if max(self.evaluations, self.chunk) > MAX_EVALUATIONS or max(self.grids, self.per_bucket) > MAX_GRIDS:
            raise UserError(f"--evaluations and --chunk go up to {MAX_EVALUATIONS}, --grids and --per-bucket up to "
                            f"{MAX_GRIDS}")
        if self.embedding not in typing.get_args(Embedding):
            raise UserError(f"--embedding must be one of {', '.join(typing.get_args(Embedding))}")
        if not all(0 < s < math.inf for s in self.noise_scales):
            raise UserError("--noise-scales must be positive, e.g. 0.1,0.5")
        return self


def methods(generator: Generator | EigenGenerator, noise_scales: tuple[float, ...]) -> list[tuple[str, str, float]]:
    """(name, mode, noise scale) of each way of varying a layer that applies to this generator."""
    if generator.cfg.arch == "eigengan":
        found = [("eigen", "eigen", 0.0)]
    else:
        found = [("buckets", "buckets", 0.0)] if max(generator.blocks) > 1 else []
    found += [(f"noise-{s:g}", "noise", s) for s in noise_scales]
    if not found:
        raise UserError("this generator has one block per bucket (a standard GAN): its buckets cannot vary; "
                        "pass --noise-injection")
    return found


def summarise_layers(long: pd.DataFrame) -> pd.DataFrame:
    """Per method x layer x distance: evaluations with a defined ratio, ratio and spread mean/std."""
    g = long.groupby(["method", "embedding", "layer", "distance"], sort=False)
    return pd.DataFrame({
        "evaluations": g["ratio"].count(), "ratio_mean": g["ratio"].mean(), "ratio_std": g["ratio"].std(),
        "spread_mean": g["spread"].mean(), "spread_std": g["spread"].std(),
    }).reset_index()


def evaluate(worker: AnalysisWorker, draws: Draws, first: int, mode: str, noise_scale: float,
             classifier: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """Task: the rows of evaluations first..first+len(draws)-1 (see analysis.responsibility), the
    semantic distance on Inception features, or on those of `classifier` (a state dict)."""
    images = variations(worker.generator, draws, mode, noise_scale)
    embed = worker.embed
    if classifier is not None:
        embed = functools.partial(classifier_features, load_classifier(classifier, worker.generator.cfg.image_size))
    return evaluation_rows(images, embed, distinct_images(worker.generator.blocks, mode), first)


def measure(generator: Generator, ckpt: Path | str, cfg: AnalyzeConfig, fan: Fanout,
            data: str = "") -> tuple[list[dict], pd.DataFrame]:
    """D_{l->1} of the checkpoint's generator, computed where `fan` says: the long rows (method x
    evaluation x layer x distance) and their summary (method x layer x distance). `data`: the
    data set whose classifier `cfg.embedding == "classifier"` embeds with."""
    todo = methods(generator, cfg.noise_scales)
    draws = draw(generator, cfg.evaluations, cfg.seed)
    classifier = None
    if cfg.embedding == "classifier":
        classifier = cached_classifier(data, generator.cfg.image_size, generator.cfg.channels)[0]
    starts = range(0, cfg.evaluations, cfg.chunk)
    calls = [(evaluate, (draws.chunk(a, a + cfg.chunk), a, mode, scale, classifier))
             for _, mode, scale in todo for a in starts]
    results = fan.run(calls, ckpt)
    per_method = len(starts)
    rows = [{**row, "method": todo[i // per_method][0], "embedding": cfg.embedding}
            for i, chunk in enumerate(results) for row in chunk]
    return rows, summarise_layers(pd.DataFrame(rows))


def analyze(ckpt: Path | str, out: Path | str | None, cfg: AnalyzeConfig,
            fan: Fanout) -> tuple[dict[str, str], pd.DataFrame]:
    """Run the analysis where `fan` says; returns where each file went, by name, and the
    summary table (method x layer x distance)."""
    cfg.validate()
    with open_job(ckpt, out, fan.device, fan.generator_weights) as job:
        generator, config, out = job.generator, job.config, job.out
        rows, summary = measure(generator, job.ckpt, cfg, fan, config.data)  # first: a job that fails writes nothing
        written: dict[str, Path | str] = {}
        rng = torch.Generator().manual_seed(cfg.seed)
        paths, z = generator.sample_latent(cfg.grids, rng)
        for g in range(cfg.grids):
            if config.model.arch == "eigengan":
                where = out / "traversals" / f"sample_{g}.png"
            else:
                # a Gaussian-input generator's samples share a path: its z is named by its index
                sample = "" if z is None else f"_z{g}"
                where = out / "frozen_paths" / f"path_{'-'.join(map(str, paths[g].tolist()))}{sample}.png"
            written[f"grid_{g}"] = save_layer_grid(generator, paths[g], None if z is None else z[g], where,
                                                   cfg.per_bucket, cfg.seed)
            for scale in cfg.noise_scales:  # Figure 5: the same sample, one layer's weights perturbed a row
                noisy = out / "noise_injection" / f"noise-{scale:g}_{where.stem}.png"
                written[f"grid_{g}_noise-{scale:g}"] = save_noise_grid(
                    generator, paths[g], None if z is None else z[g], scale, noisy, cfg.per_bucket, cfg.seed)
        ctx = job.context(dataclasses.asdict(cfg), cfg.seed)
        written["responsibility"] = RESPONSIBILITY.write(out, ctx, rows)
        written["responsibility_summary"] = SUMMARY.write(out, ctx, summary.to_dict("records"))
        title = (f"{config.preset or config.model.arch}: blocks {list(generator.blocks)}, step {ctx['step']}, "
                 f"{cfg.evaluations} evaluations")
        from analysis.plots import plot_responsibility  # matplotlib: 0.3 s a sweep trial (no plot) does not pay

        written["plot"] = plot_responsibility(summary, out / "responsibility.png", title)
        return job.finish(written), summary
