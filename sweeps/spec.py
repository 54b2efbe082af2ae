"""What a sweep is, as plain data, and the trials it stands for.

A sweep file (one per sweep in this package) holds a `Sweep`: a full variant on a paper preset
and a CPU-sized `quick` variant on the embedded data set, each a search space, a preset and a
`Budget` per trial. `plan` turns one variant into its trials, every configuration built and
validated up front, so a bad value is refused before any trial starts.

A search space maps search keys to the values to try; the trials are the grid over all keys,
times `samples` seeds. A key is a setting of the run configuration (rpgan.overrides: `lr`,
`width`, `diversity_weight`, ...) or one of AXES, which set the blocks of every bucket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from rpgan.config import ModelConfig, RunConfig, TrainConfig
from rpgan.errors import UserError
from rpgan.metrics.quality import METRICS as QUALITY_METRICS
from rpgan.overrides import SETTINGS, with_settings
from rpgan.presets import get_preset

AXES = {
    "blocks_per_bucket": "every bucket holds this many blocks (paper A.1)",
    "n_buckets": "generator depth; resnet adds same-resolution residual buckets; blocks spread evenly over them",
    "total_blocks": "blocks over all buckets, spread evenly (with n_buckets: a fixed total at every depth)",
    "random_buckets": "'all', buckets like '2' or '1,3' (only those random), or 'all-but-2'; the rest hold 1 block",
    "generator": "rpgan (the buckets of blocks), or standard: one block per bucket and a Gaussian z, the standard "
                 "GAN of the same architecture (Tables 1-2)",
}
GeneratorKind = typing.Literal["rpgan", "standard"]
# Set by the plan itself: seeds from --samples, steps and checkpoints from the budget, no grids.
PLANNED = ("seed", "steps", "checkpoint_every", "sample_every", "eval_every", "eval_samples", "eval_prd")
BOOKKEEPING = ("log_every",)  # how often a run logs, not what it computes: nothing to search
SEARCH_KEYS = (*AXES, *(name for name in SETTINGS if name not in PLANNED + BOOKKEEPING))
METRICS = (*QUALITY_METRICS, "responsibility")  # what a trial can evaluate
# PRD's k-means (rpgan.metrics.prd.compute_prd, num_clusters) clusters the generated and as many real
# images together, and k-means needs at least as many points as clusters.
PRD_CLUSTERS = 20
PRD_MIN_SAMPLES = math.ceil(PRD_CLUSTERS / 2)


# The type of each search key's values: int, float, bool, str, or a Literal of choices.
KEY_TYPES = {"blocks_per_bucket": int, "n_buckets": int, "total_blocks": int, "random_buckets": str,
             "generator": GeneratorKind,
             **{name: SETTINGS[name].kind for name in SEARCH_KEYS if name in SETTINGS}}


@dataclass(frozen=True)
class Budget:
    """What one trial spends: training steps, and the images its evaluation generates."""

    steps: int  # generator steps
    fid_samples: int  # generated images for FID and PRD, against as many real ones
    evaluations: int  # random base paths for the responsibility summary (the paper: 100)
    samples: int = 1  # seeds per point of the search space, for error bars
    checkpoint_every: int = 1000  # steps between checkpoints, which a resumed trial continues from

    def validate(self, metrics: tuple[str, ...] = ()) -> Budget:
        """Return self, or raise UserError; `metrics`: what each trial evaluates (some of METRICS)."""
        if self.steps < 1 or self.evaluations < 1 or self.samples < 1 or self.checkpoint_every < 0:
            raise UserError("--steps, --evaluations and --samples must be at least 1")
        if self.fid_samples < 2:
            raise UserError(f"--fid-samples must be at least 2 (FID needs a covariance), got {self.fid_samples}")
        if "prd" in metrics and self.fid_samples < PRD_MIN_SAMPLES:
            raise UserError(f"--fid-samples must be at least {PRD_MIN_SAMPLES} for this sweep's PRD (its k-means "
                            f"puts {PRD_CLUSTERS} clusters on the generated and as many real images), "
                            f"got {self.fid_samples}")
        return self


Scheduler = typing.Literal["grid", "asha", "halving"]


@dataclass(frozen=True)
class Schedule:
    """How the trials run: every trial to the end (grid, the default: the paper's figures need
    every point); ASHA (Li et al. 2020, asynchronous), which stops a trial at a rung
    (grace_period, grace_period * reduction_factor, ... steps) when its FID during training is not
    in the best 1 / reduction_factor of the trials that reached that rung before it; or
    synchronous successive halving (Jamieson & Talwalkar 2016, `halving`): every trial trains to
    the first rung, the best 1 / reduction_factor of them go on to the next, and so on to the full
    budget (sweeps.runner). Trials evaluate FID on eval_samples images at the rungs, and every
    eval_every steps when asked (curves, also in a grid sweep)."""

    scheduler: Scheduler = "grid"
    grace_period: int = 0  # steps before a trial can be stopped
    reduction_factor: int = 2
    eval_every: int = 0
    eval_samples: int = 0

    @classmethod
    def choose(cls, scheduler: str, budget: Budget, grace_period: int | None = None,
               reduction_factor: int | None = None, eval_every: int | None = None,
               eval_samples: int | None = None) -> Schedule:
        """The schedule asked for, with defaults from the budget: the first rung at half the
        steps, evaluations at the rungs only, on fid_samples images."""
        if scheduler not in typing.get_args(Scheduler):
            *others, last = typing.get_args(Scheduler)
            raise UserError(f"--scheduler takes {', '.join(others)} or {last}, got {scheduler!r}")
        if eval_every is not None and eval_every < 1 or eval_samples is not None and eval_samples < 2:
            raise UserError("--eval-every must be at least 1 and --eval-samples at least 2")
        if scheduler == "grid":
            if grace_period is not None or reduction_factor is not None:
                raise UserError("--grace-period and --reduction-factor need --scheduler asha or halving")
            if eval_samples is not None and eval_every is None:
                raise UserError("--eval-samples needs --eval-every (or --scheduler asha or halving)")
            # curves only: FID during training when asked, every trial to the end
            samples = (eval_samples or budget.fid_samples) if eval_every else 0
            return cls(eval_every=eval_every or 0, eval_samples=samples)
        grace = max(1, budget.steps // 2) if grace_period is None else grace_period
        chosen = cls(scheduler, grace, 2 if reduction_factor is None else reduction_factor, eval_every or 0,
                     budget.fid_samples if eval_samples is None else eval_samples)
        if not 1 <= chosen.grace_period < budget.steps:
            raise UserError(f"--grace-period must be 1..{budget.steps - 1} (below the trials' steps), got "
                            f"{chosen.grace_period}")
        if chosen.reduction_factor < 2:
            raise UserError(f"--reduction-factor must be at least 2, got {chosen.reduction_factor}")
        return chosen

    def rungs(self, budget: Budget) -> tuple[int, ...]:
        """The steps where trials are compared, before the last step: grace_period *
        reduction_factor**k (where Tune's ASHAScheduler places them); none in a grid."""
        if self.scheduler == "grid":
            return ()
        # reduction_factor >= 2: k up to the steps' bit length passes the last step
        rungs = [self.grace_period * self.reduction_factor**k for k in range(budget.steps.bit_length())]
        return tuple(r for r in rungs if r < budget.steps)

    def eval_at(self, budget: Budget) -> tuple[int, ...]:
        """The steps where a trial must measure FID: its rungs, and the last step when that
        measurement can be the trial's final FID (eval_samples == fid_samples, sweeps.trial); a
        trial that reaches the last step ends whatever its FID."""
        if self.scheduler == "grid":
            return ()
        last = (budget.steps,) if self.eval_samples == budget.fid_samples else ()
        return self.rungs(budget) + last

    def tune_scheduler(self, max_steps: int, ask_to_stop: Callable[[str], None]) -> object | None:
        """Tune's scheduler for this schedule (None: the grid's and halving's, Tune's FIFO; halving
        runs one Tune experiment per rung, sweeps.runner). It does not stop a
        trial itself: it calls ask_to_stop(trial key), and the trial ends its training at its
        next logged step and reports that it stopped. (When Tune ends a trial, the trial's Ray
        Train run is killed with it, and Ray frees that run's CPUs and GPUs only once its driver
        exits, unless the Ray dashboard's state API is up.)"""
        if self.scheduler != "asha":
            return None
        from ray.tune.schedulers import ASHAScheduler, TrialScheduler

        class Cooperative(ASHAScheduler):
            def on_trial_result(self, controller, trial, result):
                decision = super().on_trial_result(controller, trial, result)
                if decision != TrialScheduler.STOP:
                    return decision
                if result.get("step", 0) < max_steps:  # a rung at the last step: the trial is done anyway
                    ask_to_stop(trial.config["trial"])
                return TrialScheduler.CONTINUE

        # stop_last_trials off: a trial that reaches the last step ends on its own, evaluated
        return Cooperative(time_attr="step", metric="fid", mode="min", max_t=max_steps, grace_period=self.grace_period,
                           reduction_factor=self.reduction_factor, stop_last_trials=False)


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
    data: str = ""  # the data set of every trial; "" = the preset's
    schedule: Schedule = Schedule()
    trials: tuple[Trial, ...] = field(default=(), compare=False)

    @property
    def variant(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def sweep_id(self) -> str:
        """A stable id of what the sweep computes (same inputs, same id)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    def trial(self, key: str) -> Trial:
        return next(t for t in self.trials if t.key == key)

    def to_json(self) -> str:
        """The inputs of the plan (the trials follow from them)."""
        inputs = {"sweep": self.sweep, "quick": self.quick, "x": self.x, "metrics": list(self.metrics),
                  "preset": self.preset, "space": {k: list(v) for k, v in self.space.items()},
                  "budget": dataclasses.asdict(self.budget), "seed": self.seed,
                  **({"data": self.data} if self.data else {}),  # absent when the preset's: older ids stay
                  **({"schedule": dataclasses.asdict(self.schedule)} if self.schedule != Schedule() else {})}
        return json.dumps(inputs, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return make_plan(raw["sweep"], raw["quick"], raw["x"], tuple(raw["metrics"]), raw["preset"],
                         {k: tuple(v) for k, v in raw["space"].items()}, Budget(**raw["budget"]), raw["seed"],
                         raw.get("data", ""), Schedule(**raw.get("schedule", {})))


def plan(sweep: Sweep, quick: bool, seed: int, space: dict[str, tuple] | None = None, preset: str | None = None,
         data: str | None = None, scheduler: str = "grid", schedule: dict | None = None, **budget) -> Plan:
    """The trials of a sweep's variant, with `space` keys replacing (or adding to) its search
    space, `preset` and `data` replacing its preset and that preset's data set, `budget`
    fields (steps, fid_samples, evaluations, samples) replacing its budget, and `scheduler`
    with `schedule`'s values (Schedule.choose) deciding which trials run to the end."""
    variant = sweep.quick if quick else sweep.full
    merged = {**variant.space, **(space or {})}
    chosen = dataclasses.replace(variant.budget, **{k: v for k, v in budget.items() if v is not None})
    chosen.validate(sweep.metrics)
    return make_plan(sweep.name, quick, sweep.x, sweep.metrics, preset or variant.preset, merged, chosen, seed,
                     data or "", Schedule.choose(scheduler, chosen, **(schedule or {})))


def make_plan(sweep: str, quick: bool, x: str, metrics: tuple[str, ...], preset: str, space: dict[str, tuple],
              budget: Budget, seed: int, data: str = "", schedule: Schedule = Schedule()) -> Plan:
    if set(metrics) - set(METRICS):
        raise UserError(f"unknown metrics {sorted(set(metrics) - set(METRICS))}; choose from {', '.join(METRICS)}")
    budget.validate(metrics)
    unknown = [k for k in space if k not in SEARCH_KEYS]
    if unknown:
        raise UserError(f"unknown search key {unknown[0]!r}; choose from {', '.join(SEARCH_KEYS)} "
                        "(seeds come from --samples, steps from --steps)")
    if any(not values for values in space.values()):
        raise UserError("every search key needs at least one value")
    if x not in space:
        raise UserError(f"the search space has no {x!r}, the key the summary plot needs")
    space = {k: typed_values(k, values) for k, values in space.items()}
    p = get_preset(preset)
    if not (data or p.data):
        raise UserError(f"preset {preset} has no default data set; pass --data folder:PATH")
    trials, seen = [], {}
    for values in itertools.product(*space.values()):
        point = dict(zip(space, values))
        for s in range(seed, seed + budget.samples):
            key = "_".join(f"{k}-{_slug(v)}" for k, v in [*point.items(), ("seed", s)])
            trial = Trial(key, point, trial_config(p.model, p.train, data or p.data, preset, point, s, budget,
                                                   schedule, eval_prd="prd" in metrics))
            for same, what in ((key, "one run directory"), (trial.config, "the same configuration")):
                if same in seen:  # two trials would train into one directory, or the same thing twice
                    raise UserError(f"search points {seen[same].point} and {point} share {what} ({key}); "
                                    "give each point once")
                seen[same] = trial
            trials.append(trial)
    shapes = {(t.config.model.image_size, t.config.model.channels) for t in trials}
    if len(shapes) > 1:  # every trial's FID is measured against the same real images
        raise UserError(f"the trials of a sweep share one image size and channel count, got {sorted(shapes)}")
    return Plan(sweep, quick, x, tuple(metrics), preset, space, budget, seed, data, schedule, tuple(trials))


def typed_values(key: str, values: tuple) -> tuple:
    """A search key's values (text as `--space` gives them, or values) as its configuration
    field's type; UserError naming a value of another type, or a value given twice once typed
    (1 and 01, 0.1 and 0.10)."""
    kind = KEY_TYPES[key]
    typed = tuple(_typed(key, kind, v) for v in values)
    for i, v in enumerate(typed):
        if v in typed[:i]:
            raise UserError(f"search key {key} has the value {v!r} twice ({values[typed.index(v)]!r} and "
                            f"{values[i]!r}); give each value once")
    return typed


def _typed(key: str, kind: object, value: object) -> object:
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        if not isinstance(value, str) or value not in choices:
            raise UserError(f"search key {key} takes one of {', '.join(choices)}, got {value!r}")
        return value
    if kind is str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise UserError(f"search key {key} takes text, got {value!r}")
        return str(value)
    if isinstance(value, str):  # text from --space: parsed as the field's type
        text = value.strip().lower()
        if kind is bool:
            value = {"true": True, "false": False}.get(text, value)
        else:
            try:
                value = kind(text) if kind in (int, float) else value
            except ValueError:
                pass
    if kind is bool:
        if not isinstance(value, bool):
            raise UserError(f"search key {key} takes true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"search key {key} takes whole numbers, got {value!r}; pass e.g. --space {key}=1,2")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"search key {key} takes finite numbers, got {value!r}; pass e.g. --space {key}=0.1,0.5")
        return float(value)
    raise TypeError(f"search key {key} has a field of type {kind!r} that sweeps cannot set")


def trial_config(model: ModelConfig, train: TrainConfig, data: str, preset: str, point: dict, seed: int,
                 budget: Budget, schedule: Schedule = Schedule(), eval_prd: bool = False) -> RunConfig:
    """The preset's configuration with a point of the search space applied; UserError if impossible.
    FID during training (when the schedule evaluates) measures PRD too when `eval_prd`, so the
    evaluation at the last step is the trial's whole FID and PRD (sweeps.trial)."""
    try:
        planned = {"seed": seed, "steps": budget.steps, "checkpoint_every": budget.checkpoint_every, "sample_every": 0,
                   "eval_every": schedule.eval_every}
        eval_at = schedule.eval_at(budget)
        if schedule.eval_every or eval_at:
            planned.update(eval_samples=schedule.eval_samples, eval_prd=eval_prd)
        if schedule.scheduler != "grid":  # the rungs are multiples: a trial stopped at one keeps its checkpoint
            planned["checkpoint_every"] = schedule.grace_period
        standard = {"input": "gaussian"} if point.get("generator") == "standard" else {}
        chosen = {k: v for k, v in point.items() if k in SETTINGS}
        if standard and chosen.get("input", "gaussian") != "gaussian":
            raise UserError("generator standard has a Gaussian input; drop the input key")
        model, train = with_settings(model, train, {**chosen, **standard, **planned})
        model = dataclasses.replace(model, blocks=_blocks(model, point))
        train = dataclasses.replace(train, eval_at=eval_at)
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
    if point.get("generator") == "standard":
        blocks = (1,) * len(blocks)
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
