"""`rpgan analyze`: the paper's section 4.1 for one checkpoint.

Writes, under the output directory:
  frozen_paths/path_*.png        Figure 3: per base path, a row per bucket with that bucket unfrozen
  traversals/sample_*.png        instead, for an EigenGAN: per base sample, a row per layer x dimension
  responsibility/                Parquet, one row per evaluation x layer x distance
  responsibility_summary/        Parquet, one row per method x layer x distance (mean, std)
  responsibility.png             Figure 4: mean D_{l->1} per bucket with std, semantic and color
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from analysis.fanout import Fanout
from analysis.job import open_job
from analysis.limits import MAX_EVALUATIONS, MAX_GRIDS
from analysis.plots import plot_responsibility
from analysis.responsibility import make_plan
from analysis.results import write_table
from rpgan.eigengan import EigenGenerator
from rpgan.errors import UserError
from rpgan.images import save_layer_grid
from rpgan.model import Generator


@dataclass(frozen=True)
class AnalyzeConfig:
    evaluations: int = 100  # the paper averages D_{l->1} over 100 random base paths
    seed: int = 0
    grids: int = 4  # Figure 3 PNGs, one per base path
    per_bucket: int = 10  # blocks shown per bucket in a Figure 3 row (EigenGAN: steps per traversal)
    noise_scales: tuple[float, ...] = ()  # noise injection: W + scale * std(W) * N(0, 1) per layer
    chunk: int = 10  # evaluations per task sent to a worker

    def validate(self) -> AnalyzeConfig:
        """Return self, or raise UserError: counts are bounded so that a typo allocates nothing."""
        if self.evaluations < 1 or self.chunk < 1 or self.grids < 0 or self.per_bucket < 1:
            raise UserError("--evaluations, --chunk and --per-bucket must be >= 1 and --grids >= 0")
        if max(self.evaluations, self.chunk) > MAX_EVALUATIONS or max(self.grids, self.per_bucket) > MAX_GRIDS:
            raise UserError(f"--evaluations and --chunk go up to {MAX_EVALUATIONS}, --grids and --per-bucket up to "
                            f"{MAX_GRIDS}")
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


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Per method x layer x distance: evaluations with a defined ratio, ratio and spread mean/std."""
    g = long.groupby(["method", "layer", "distance"], sort=False)
    return pd.DataFrame({
        "evaluations": g["ratio"].count(), "ratio_mean": g["ratio"].mean(), "ratio_std": g["ratio"].std(),
        "spread_mean": g["spread"].mean(), "spread_std": g["spread"].std(),
    }).reset_index()


def measure(generator: Generator, ckpt: Path | str, cfg: AnalyzeConfig, fan: Fanout) -> tuple[list[dict], pd.DataFrame]:
    """D_{l->1} of the checkpoint's generator, computed where `fan` says: the long rows (method x
    evaluation x layer x distance) and their summary (method x layer x distance)."""
    todo = methods(generator, cfg.noise_scales)
    plan = make_plan(generator, cfg.evaluations, cfg.seed)
    starts = range(0, cfg.evaluations, cfg.chunk)
    calls = [("responsibility", (plan.chunk(a, a + cfg.chunk), a, mode, scale))
             for _, mode, scale in todo for a in starts]
    results = fan.run(calls, ckpt)
    per_method = len(starts)
    rows = [{**row, "method": todo[i // per_method][0]} for i, chunk in enumerate(results) for row in chunk]
    return rows, summarise(pd.DataFrame(rows))


def analyze(ckpt: Path | str, out: Path | str | None, cfg: AnalyzeConfig,
            fan: Fanout) -> tuple[dict[str, str], pd.DataFrame]:
    """Run the analysis where `fan` says; returns where each file went, by name, and the
    summary table (method x layer x distance)."""
    cfg.validate()
    with open_job(ckpt, out, fan.device) as job:
        generator, config, out = job.generator, job.config, job.out
        methods(generator, cfg.noise_scales)  # refuse a generator that cannot vary before drawing grids
        written: dict[str, Path] = {}

        rng = torch.Generator().manual_seed(cfg.seed)
        paths, z = generator.sample_latent(cfg.grids, rng)
        for g in range(cfg.grids):
            if config.model.arch == "eigengan":
                where = out / "traversals" / f"sample_{g}.png"
            else:
                where = out / "frozen_paths" / f"path_{'-'.join(map(str, paths[g].tolist()))}.png"
            written[f"grid_{g}"] = save_layer_grid(generator, paths[g], None if z is None else z[g], where,
                                                   cfg.per_bucket, cfg.seed)

        rows, summary = measure(generator, job.ckpt, cfg, fan)
        ctx = job.context(dataclasses.asdict(cfg), cfg.seed)
        written["responsibility"] = write_table(out, "responsibility", ctx, rows)
        written["responsibility_summary"] = write_table(out, "responsibility_summary", ctx,
                                                        summary.to_dict("records"))
        title = (f"{config.preset or config.model.arch}: blocks {list(generator.blocks)}, step {ctx['step']}, "
                 f"{cfg.evaluations} evaluations")
        written["plot"] = plot_responsibility(summary, out / "responsibility.png", title)
        return job.finish(written), summary
