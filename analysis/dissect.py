"""`rpgan dissect`: unit dissection of one checkpoint (analysis.dissection), fanned out like
`rpgan analyze`.

Writes, under the output directory:
  unit_activation/       Parquet, one row per layer x unit: rank, mean and quantiles of its activation
  ablation_effect/       Parquet, one row per layer x distance: effect of ablating its top units,
                         and its ratio to layer 1's (comparable with D_{l->1})
  dissection.png         the ratio per layer, semantic and color (the Figure 4 layout)
  units/layer_L.png      per layer, its top units' top-activating samples, a row per unit
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

from analysis.dissection import ablation, ablation_effects, layers, unit_activations
from analysis.fanout import AnalysisWorker, Fanout
from analysis.job import Job, open_job
from analysis.limits import MAX_SAMPLES, MAX_STRIPS, Fill
from analysis.plots import plot_responsibility
from analysis.results import table
from rpgan.errors import UserError
from rpgan.io.images import render, save_labeled_rows

import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

QUANTILES = (0.5, 0.9, 0.99)
UNIT_ACTIVATION = table("unit_activation", [
    ("layer", pa.int64()), ("unit", pa.int64()), ("units", pa.int64()), ("rank", pa.int64()),
    ("mean", pa.float64()), ("q50", pa.float64()), ("q90", pa.float64()), ("q99", pa.float64())])
ABLATION_EFFECT = table("ablation_effect", [
    ("method", pa.string()), ("layer", pa.int64()), ("distance", pa.string()), ("samples", pa.int64()),
    ("effect_mean", pa.float64()), ("effect_std", pa.float64()), ("ratio_mean", pa.float64()),
    ("ratio_std", pa.float64())])


@dataclass(frozen=True)
class DissectConfig:
    n: int = 200  # images (random paths) the activations and effects are averaged over
    units: int = 8  # top units ablated together in each layer
    fill: Fill = "mean"  # ablated units take their mean activation ("mean") or 0 ("zero")
    seed: int = 0
    strips: int = 4  # units shown per layer in units/layer_L.png
    per_strip: int = 8  # top-activating samples shown per unit
    chunk: int = 50  # samples per task sent to a worker

    def validate(self) -> DissectConfig:
        if self.n < 2 or self.units < 1 or self.chunk < 1 or self.strips < 0 or self.per_strip < 1:
            # --units 0 would ablate nothing: every effect 0, every ratio to layer 1 undefined
            raise UserError("--n must be >= 2, --units, --chunk and --per-strip >= 1, --strips >= 0")
        if max(self.n, self.units, self.chunk) > MAX_SAMPLES or max(self.strips, self.per_strip) > MAX_STRIPS:
            raise UserError(f"--n, --units and --chunk go up to {MAX_SAMPLES}, --strips up to {MAX_STRIPS}")
        if self.fill not in typing.get_args(Fill):
            raise UserError(f"--fill takes {' or '.join(typing.get_args(Fill))}, got {self.fill!r}")
        return self


def activations(worker: AnalysisWorker, paths: Tensor, z: Tensor | None, layer: int) -> Tensor:
    """Task: activations [N, U] of a layer's units (see analysis.dissection)."""
    return unit_activations(worker.generator, paths, z, layer)


def effects(worker: AnalysisWorker, paths: Tensor, z: Tensor | None,
            ablations: list[tuple[int, Tensor, Tensor]]) -> Tensor:
    """Task: effects [A, N, 2] of each (layer, units [k], fill [U]) ablation (see analysis.dissection)."""
    edits = [(layer, ablation(units, fill)) for layer, units, fill in ablations]
    return ablation_effects(worker.generator, paths, z, edits, worker.embed)


def summarise_effects(effects: torch.Tensor, dissected: list[int], method: str) -> pd.DataFrame:
    """Effects [layers, N, 2] -> per layer x distance: effect mean/std and the per-sample ratio
    to layer 1's effect, mean/std (NaN where layer 1's effect is 0)."""
    rows = []
    for d, distance in enumerate(("semantic", "color")):
        e = effects[..., d]
        ratio = torch.where(e[0] > 0, e / e[0].clamp_min(1e-300), torch.full_like(e, float("nan")))
        for i, layer in enumerate(dissected):
            rows.append({"method": method, "layer": layer, "distance": distance, "samples": e.shape[1],
                         "effect_mean": float(e[i].mean()), "effect_std": float(e[i].std()),
                         "ratio_mean": float(ratio[i].nanmean()),
                         "ratio_std": float(ratio[i][~ratio[i].isnan()].std())})
    return pd.DataFrame(rows)


def dissect(ckpt: Path | str, out: Path | str | None, cfg: DissectConfig, fan: Fanout) -> dict[str, str]:
    """Run the dissection where `fan` says; returns where each file went, by name."""
    cfg.validate()
    # both jobs on the same workers
    with open_job(ckpt, out, fan.device, fan.generator_weights) as job, fan.holding(job.ckpt):
        return job.finish(_dissect(job, cfg, fan))


def _dissect(job: Job, cfg: DissectConfig, fan: Fanout) -> dict[str, Path]:
    generator, config, out, ckpt = job.generator, job.config, job.out, job.ckpt
    dissected = layers(generator)
    paths, z = generator.sample_latent(cfg.n, torch.Generator().manual_seed(cfg.seed))
    starts = range(0, cfg.n, cfg.chunk)

    def part(a: int) -> tuple:
        return paths[a : a + cfg.chunk], None if z is None else z[a : a + cfg.chunk]

    calls = [(activations, (*part(a), layer)) for layer in dissected for a in starts]
    results = fan.run(calls, ckpt, label="activation chunk")
    acts = {layer: torch.cat(results[i * len(starts) : (i + 1) * len(starts)]) for i, layer in enumerate(dissected)}

    unit_rows, ablations, top = [], [], {}
    for layer, a in acts.items():
        mean = a.mean(0)
        order = torch.argsort(mean, descending=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        q = torch.quantile(a, torch.tensor(QUANTILES, dtype=a.dtype), dim=0)
        unit_rows += [{"layer": layer, "unit": u, "units": a.shape[1], "rank": int(rank[u]), "mean": float(mean[u]),
                       "q50": float(q[0, u]), "q90": float(q[1, u]), "q99": float(q[2, u])} for u in range(a.shape[1])]
        top[layer] = order[: min(cfg.units, a.shape[1])]
        fill = mean if cfg.fill == "mean" else torch.zeros_like(mean)
        ablations.append((layer, top[layer], fill))
    chunks = fan.run([(effects, (*part(a), ablations)) for a in starts], ckpt, label="ablation chunk")
    method = f"unit-ablation-top{cfg.units}-{cfg.fill}"
    summary = summarise_effects(torch.cat(chunks, 1), dissected, method)

    ctx = job.context(dataclasses.asdict(cfg), cfg.seed)
    written = {"unit_activation": UNIT_ACTIVATION.write(out, ctx, unit_rows),
               "ablation_effect": ABLATION_EFFECT.write(out, ctx, summary.to_dict("records"))}
    title = (f"{config.preset or config.model.arch}: ablating the top {cfg.units} units of each layer "
             f"(fill {cfg.fill}), {cfg.n} samples, step {ctx['step']}")
    written["plot"] = plot_responsibility(summary, out / "dissection.png", title)
    for layer, a in acts.items():
        if cfg.strips:
            rows = []
            for u in top[layer][: cfg.strips].tolist():
                best = torch.argsort(a[:, u], descending=True)[: cfg.per_strip]
                rows.append((f"unit {u}", render(generator, paths[best], None if z is None else z[best])))
            written[f"units_{layer}"] = save_labeled_rows(rows, out / "units" / f"layer_{layer}.png")
    return written
