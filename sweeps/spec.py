"""What a sweep is, as plain data, and the trials it stands for.

A sweep file (one per sweep in this package) holds a `Sweep`: a full variant on a paper preset
and a CPU-sized `quick` variant on the embedded data set, each a search space, a preset and a
`Budget` per trial. `plan` turns one variant into its trials, every configuration built and
validated up front, so a bad value is refused before any trial starts.

A search space maps search keys to the values to try; the trials are the grid over all keys,
times `samples` seeds. A key is a scalar field of ModelConfig / TrainConfig (`lr`, `width`,
`diversity_weight`, ...) or one of AXES, which set the blocks of every bucket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field

from rpgan.config import ModelConfig, RunConfig, TrainConfig
from rpgan.errors import UserError
from rpgan.presets import get_preset

AXES = {
    "blocks_per_bucket": "every bucket holds this many blocks (paper A.1)",
    "n_buckets": "generator depth; resnet adds same-resolution residual buckets; blocks spread evenly over them",
    "total_blocks": "blocks over all buckets, spread evenly (with n_buckets: a fixed total at every depth)",
    "random_buckets": "'all', buckets like '2' or '1,3' (only those random), or 'all-but-2'; the rest hold 1 block",
}
# Scalar configuration fields a sweep may vary; each is a column of the results (sweeps.results).
MODEL_FIELDS = ("arch", "image_size", "channels", "width", "z_dim", "input", "linear", "routing", "d_arch", "d_width")
TRAIN_FIELDS = ("steps", "batch", "d_steps", "loss", "lr", "diversity_weight", "gp_weight", "seed")
SEARCH_KEYS = (*AXES, *MODEL_FIELDS, *(f for f in TRAIN_FIELDS if f not in ("steps", "seed")))
METRICS = ("fid", "prd", "responsibility")


@dataclass(frozen=True)
class Budget:
    """What one trial spends: training steps, and the images its evaluation generates."""

    steps: int  # generator steps
    fid_samples: int  # generated images for FID and PRD, against as many real ones
    evaluations: int  # random base paths for the responsibility summary (the paper: 100)
    samples: int = 1  # seeds per point of the search space, for error bars
    checkpoint_every: int = 1000  # steps between checkpoints, which a resumed trial continues from

    def validate(self) -> Budget:
        if self.steps < 1 or self.evaluations < 1 or self.samples < 1 or self.checkpoint_every < 0:
            raise UserError("--steps, --evaluations and --samples must be at least 1")
        if self.fid_samples < 2:
            raise UserError(f"--fid-samples must be at least 2 (FID needs a covariance), got {self.fid_samples}")
        return self


@dataclass(frozen=True)
class Variant:
    """A search space over one preset, with the budget of each trial."""

    preset: str
    space: dict[str, tuple]
    budget: Budget


@dataclass(frozen=True)
class Sweep:
    name: str
    about: str  # one line for `rpgan sweeps`
    x: str  # the search key on the x axis of the summary plot
    metrics: tuple[str, ...]  # what each trial evaluates after training: some of METRICS
    full: Variant  # the paper-sized experiment, for a GPU cluster
    quick: Variant  # CPU-sized, on the embedded data set


@dataclass(frozen=True)
class Trial:
    key: str  # e.g. "blocks_per_bucket-10_seed-0": the trial's run directory and result part
    point: dict  # search key -> value
    config: RunConfig


@dataclass(frozen=True)
class Plan:
    """One sweep run: a variant with the user's overrides, resolved into trials."""

    sweep: str
    quick: bool
    x: str
    metrics: tuple[str, ...]
    preset: str
    space: dict[str, tuple]
    budget: Budget
    seed: int
    trials: tuple[Trial, ...] = field(default=(), compare=False)

    @property
    def variant(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def run_id(self) -> str:
        """A stable id of what the sweep computes (same inputs, same id)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    def trial(self, key: str) -> Trial:
        return next(t for t in self.trials if t.key == key)

    def to_json(self) -> str:
        """The inputs of the plan (the trials follow from them)."""
        inputs = {"sweep": self.sweep, "quick": self.quick, "x": self.x, "metrics": list(self.metrics),
                  "preset": self.preset, "space": {k: list(v) for k, v in self.space.items()},
                  "budget": dataclasses.asdict(self.budget), "seed": self.seed}
        return json.dumps(inputs, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return make_plan(raw["sweep"], raw["quick"], raw["x"], tuple(raw["metrics"]), raw["preset"],
                         {k: tuple(v) for k, v in raw["space"].items()}, Budget(**raw["budget"]), raw["seed"])


def plan(sweep: Sweep, quick: bool, seed: int, space: dict[str, tuple] | None = None, **budget) -> Plan:
    """The trials of a sweep's variant, with `space` keys replacing (or adding to) its search
    space and `budget` fields (steps, fid_samples, evaluations, samples) replacing its budget."""
    variant = sweep.quick if quick else sweep.full
    merged = {**variant.space, **(space or {})}
    chosen = dataclasses.replace(variant.budget, **{k: v for k, v in budget.items() if v is not None})
    return make_plan(sweep.name, quick, sweep.x, sweep.metrics, variant.preset, merged, chosen, seed)


def make_plan(sweep: str, quick: bool, x: str, metrics: tuple[str, ...], preset: str, space: dict[str, tuple],
              budget: Budget, seed: int) -> Plan:
    budget.validate()
    unknown = [k for k in space if k not in SEARCH_KEYS]
    if unknown:
        raise UserError(f"unknown search key {unknown[0]!r}; choose from {', '.join(SEARCH_KEYS)} "
                        "(seeds come from --samples, steps from --steps)")
    if any(not values for values in space.values()):
        raise UserError("every search key needs at least one value")
    if set(metrics) - set(METRICS):
        raise UserError(f"unknown metrics {sorted(set(metrics) - set(METRICS))}; choose from {', '.join(METRICS)}")
    if x not in space:
        raise UserError(f"the search space has no {x!r}, the key the summary plot needs")
    p = get_preset(preset)
    trials = []
    for values in itertools.product(*space.values()):
        point = dict(zip(space, values))
        for s in range(seed, seed + budget.samples):
            key = "_".join(f"{k}-{_slug(v)}" for k, v in [*point.items(), ("seed", s)])
            trials.append(Trial(key, point, trial_config(p.model, p.train, p.data, preset, point, s, budget)))
    shapes = {(t.config.model.image_size, t.config.model.channels) for t in trials}
    if len(shapes) > 1:  # every trial's FID is measured against the same real images
        raise UserError(f"the trials of a sweep share one image size and channel count, got {sorted(shapes)}")
    return Plan(sweep, quick, x, tuple(metrics), preset, space, budget, seed, tuple(trials))


def trial_config(model: ModelConfig, train: TrainConfig, data: str, preset: str, point: dict, seed: int,
                 budget: Budget) -> RunConfig:
    """The preset's configuration with a point of the search space applied; UserError if impossible."""
    try:
        model = dataclasses.replace(model, **{k: v for k, v in point.items() if k in MODEL_FIELDS})
        train = dataclasses.replace(train, **{k: v for k, v in point.items() if k in TRAIN_FIELDS}, seed=seed,
                                    steps=budget.steps, checkpoint_every=budget.checkpoint_every, sample_every=0)
        model = dataclasses.replace(model, blocks=_blocks(model, point))
        return RunConfig(model=model.validate(), train=train.validate(), data=data, preset=preset)
    except (UserError, TypeError, ValueError) as e:
        raise UserError(f"search point {point}: {e}") from None


def _blocks(model: ModelConfig, point: dict) -> tuple[int, ...]:
    n = point.get("n_buckets", model.n_buckets)
    if "blocks_per_bucket" in point:
        blocks = (point["blocks_per_bucket"],) * n
    elif "n_buckets" in point or "total_blocks" in point:
        total = point.get("total_blocks", sum(model.blocks))
        if total < n:
            raise UserError(f"total_blocks {total} cannot give each of {n} buckets a block")
        blocks = tuple(total // n + (i < total % n) for i in range(n))
    else:
        blocks = model.blocks
    if "random_buckets" in point:
        chosen = random_buckets(str(point["random_buckets"]), len(blocks))
        blocks = tuple(m if i + 1 in chosen else 1 for i, m in enumerate(blocks))
    return blocks


def random_buckets(text: str, n: int) -> set[int]:
    """Buckets (1..n) that keep their blocks: 'all', 'all-but-2', or a list like '1,3'."""
    try:
        if text == "all":
            return set(range(1, n + 1))
        if text.startswith("all-but-"):
            chosen = set(range(1, n + 1)) - {int(text.removeprefix("all-but-"))}
        else:
            chosen = {int(b) for b in text.split(",")}
    except ValueError:
        chosen = set()
    if not chosen or not chosen <= set(range(1, n + 1)) or len(chosen) == n and text.startswith("all-but-"):
        raise UserError(f"random_buckets {text!r}: use 'all', 'all-but-B' or buckets like '1,3', B in 1..{n}")
    return chosen


def _slug(value) -> str:
    return str(value).replace(",", "+").replace("/", "-").replace(" ", "")
