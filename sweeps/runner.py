"""Run a sweep's trials on Ray Tune, as many at once as the cluster's resources allow.

The sweep folder STORAGE/NAME holds sweep.json (the plan's inputs), runs/KEY (each trial's
Ray Train run), trials/ and responsibility/ (the results, sweeps.results) and tune/attempt-N
(Tune's own records, one experiment per invocation). Each invocation runs the trials that have
no finished row yet, so a resumed sweep skips finished trials and retries failed ones, and a
trial interrupted mid-training continues from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time

from analysis.fanout import Fanout
from analysis.fid import reference_features
from rpgan.distributed.ray_session import Workers, check_fit, cluster_resources, is_private
from rpgan.io.progress import clock
from rpgan.io.run import Folder
from rpgan.io.tracking import Tracker, Tracking
from rpgan.metrics.features import Reference
from rpgan.training.evaluation import REFERENCE_SEED
from sweeps.results import DONE, finished, read_table
from sweeps.spec import Plan
from sweeps.trial import Setup, ask_to_stop, fid_at, record_stopped, run_trial, trial_resources, trial_retries

import ray
import ray.tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

PLAN = "sweep.json"
TUNE = "tune"
# Tune's newer console output prints its configuration box and result tables even at verbose=0;
# the legacy one stays quiet and `Report` says what happens.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Tune's schedulers act on results that hold their metric and skip the others, but Tune refuses
# a result without it unless told: FID comes with the rows of evaluated steps only.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
WORKER_FLAGS = "--workers-per-trial, --cpus-per-worker or --gpus-per-worker"  # named in a refusal
FINAL = "train_time_s"  # in the trial's own last report only (sweeps.trial.REPORTED), not in training rows


def concurrency(workers: Workers) -> int:
    """How many trials (each a group of `workers`) the connected cluster runs at once; UserError
    if a private local Ray cannot hold even one."""
    spare = 1.0 if is_private() and workers.count > 1 else 0.0  # a local Ray's extra CPU, for trial slivers
    check_fit(workers.count, workers.cpus, workers.gpus, WORKER_FLAGS, spare_cpus=spare)
    have = cluster_resources()
    slots = [(have.get("CPU", 0) - spare) // (workers.count * workers.cpus)]
    if workers.gpus:
        slots.append(have.get("GPU", 0) // (workers.count * workers.gpus))
    return max(1, int(min(slots)))  # a cluster that autoscales grows to fit the first trial


class Report(ray.tune.Callback):
    """Progress lines on stderr: each trial's checkpoints and evaluations, each finished, stopped
    or failed trial, and an ETA from the mean duration of the ended trials and the ages of the
    running ones."""

    def __init__(self, plan: Plan, todo: int, at_once: int, until: int = 0):
        self.plan, self.todo, self.at_once = plan, todo, at_once
        self.until = until or plan.budget.steps  # the step the trials train to (a halving rung)
        self.start = time.monotonic()
        self.running: dict[str, float] = {}  # trial key -> start time
        self.durations: list[float] = []
        self.failed = 0

    def _say(self, text: str) -> None:
        now = time.monotonic()
        ended = len(self.durations) + self.failed
        eta = ""
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            waiting = self.todo - ended - len(self.running)
            left = waiting * mean + sum(max(0.0, mean - (now - t)) for t in self.running.values())
            eta = f" | ETA {clock(left / self.at_once)}"
        sys.stderr.write(f"[{self.plan.sweep} {ended}/{self.todo} trials, {clock(now - self.start)}] {text}{eta}\n")
        sys.stderr.flush()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running[trial.config["trial"]] = time.monotonic()
        self._say(f"{trial.config['trial']}: training")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if FINAL in result:  # the trial's own last report: on_trial_complete says it
            return
        step = f"{trial.config['trial']}: step {result.get('step')}/{self.until}"
        if "fid" in result:  # an evaluation during training
            self._say(f"{step}, FID {result['fid']:.2f} during training")
        elif CHECKPOINT_PATH_KEY in result:
            self._say(step)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        key, r = trial.config["trial"], trial.last_result
        started = self.running.pop(key)
        if r.get("status") == "error":  # bad input: ended, not retried (sweeps.trial.run_trial)
            self.failed += 1
            self._say(f"{key}: FAILED (its row in trials/ holds the error)")
            return
        self.durations.append(time.monotonic() - started)
        if r.get("status") == "rung":
            self._say(f"{key}: at step {r.get('step')}, FID {r.get('fid', math.nan):.2f} during training")
            return
        if r.get("status") == "stopped":
            self._say(f"{key}: stopped by {self.plan.schedule.scheduler} at step {r.get('step')}, FID "
                      f"{r.get('fid', math.nan):.2f} during training, train {clock(r.get('train_time_s', 0))}")
            return
        self._say(f"{key}: done, FID {r.get('fid', math.nan):.2f}, train "
                  f"{clock(r.get('train_time_s', 0))}, evaluation {clock(r.get('eval_time_s', 0))}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.pop(trial.config["trial"], None)
        self.failed += 1
        self._say(f"{trial.config['trial']}: FAILED (its row in trials/ holds the error)")


def run_sweep(plan: Plan, sweep: Folder, workers: Workers, max_concurrent: int, fan: Fanout,
              dataset_size: int, tracking: Tracking | None = None) -> int:
    """Run the plan's unfinished trials on the connected Ray, at most max_concurrent at once;
    `fan` computes the reference features; `dataset_size`: the training images of every trial;
    `tracking`: one MLflow run for the sweep (its plan, and its trials table at the end), a child
    run per trial (rpgan.io.tracking). Returns how many trials failed."""
    done = finished(sweep, DONE)
    # The grid: the biggest generators first, so the long trials start early and the sweep ends
    # sooner. ASHA: an order shuffled by the plan's seed, as the random search it was made for;
    # in a sorted order every value that beats the ones before it at a rung goes on.
    if plan.schedule.scheduler == "asha":
        order = list(plan.trials)
        random.Random(plan.seed).shuffle(order)
    else:
        order = sorted(plan.trials, key=lambda t: -sum(t.config.model.blocks))
    todo = [t.key for t in order if t.key not in done]
    if not todo:
        return 0
    first = plan.trials[0].config
    reference = None
    if "fid" in plan.metrics:
        m = first.model
        # the real images the trials' FID during training compares with, whatever the sweep's seed,
        # so both read one cache file
        reference = reference_features(first.data, m.image_size, m.channels, plan.budget.fid_samples, fan,
                                       REFERENCE_SEED)[0]
    parent = _track_sweep(plan, sweep, tracking) if tracking else None
    setup = Setup(plan, sweep.storage, sweep.name, workers, dataset_size,
                  tracking=dataclasses.replace(tracking, parent=parent.run_id) if parent and parent.client else None)
    failed = 1
    try:
        if plan.schedule.scheduler == "halving":
            failed = _halve(plan, sweep, setup, reference, [t.key for t in order], max_concurrent)
        else:
            failed = _tune(plan, sweep, setup, reference, todo, max_concurrent)
        return failed
    finally:
        if parent and parent.client:
            try:
                trials = read_table(sweep, "trials")
            except Exception:  # none finished, or a part that cannot be read: the sweep's own output says so
                trials = None
            if trials is not None:
                parent.table(trials, "trials.parquet")
            parent.close(failed=bool(failed))


def _track_sweep(plan: Plan, sweep: Folder, tracking: Tracking) -> Tracker:
    """The sweep's MLflow run (continued when the sweep resumes), with the plan's settings."""
    parent = Tracker(tracking, sweep.name, sweep.uri)
    parent.params({"sweep": plan.sweep, "variant": plan.variant, "preset": plan.preset, "seed": plan.seed,
                   "trials": len(plan.trials), "steps": plan.budget.steps, "scheduler": plan.schedule.scheduler,
                   "sweep_id": plan.sweep_id})
    parent.text(plan.to_json(), PLAN)
    return parent


def _tune(plan: Plan, sweep: Folder, setup: Setup, reference: Reference | None, todo: list[str],
          max_concurrent: int) -> int:
    """One Tune experiment over the trials `todo` (in this order); returns how many failed."""
    if not todo:
        return 0
    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, setup=setup, reference=reference),
                                        trial_resources(setup.workers))
    attempt = len(sweep.dirs(TUNE)) + 1
    tuner = ray.tune.Tuner(
        trainable,
        param_space={"trial": ray.tune.grid_search(todo)},
        # reuse_actors: the next trial runs in a finished trial's process, its imports and Inception loaded
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                        trial_dirname_creator=lambda t: t.config["trial"],
                                        scheduler=plan.schedule.tune_scheduler(
                                            plan.budget.steps, lambda key: ask_to_stop(sweep, key))),
        run_config=ray.tune.RunConfig(name=f"attempt-{attempt}", storage_path=f"{sweep.uri}/{TUNE}", verbose=0,
                                      callbacks=[Report(plan, len(todo), max_concurrent, setup.until)],
                                      failure_config=ray.tune.FailureConfig(
                                          max_failures=trial_retries(setup.workers))),
    )
    results = tuner.fit()
    return sum(1 for r in results if r.error is not None or (r.metrics or {}).get("status") == "error")


def halving_keeps(fids: dict[str, float], reduction_factor: int) -> list[str]:
    """The trials that go on from a rung: the best max(1, n // reduction_factor) of the n trials
    of `fids` (trial key -> FID at the rung, in the plan's order) by FID. A NaN FID (diverged, or
    not measured: the trial failed) ranks after every number; equal FIDs keep the plan's order."""
    ranked = sorted(fids, key=lambda k: (math.isnan(fids[k]), 0.0 if math.isnan(fids[k]) else fids[k]))
    return ranked[:max(1, len(fids) // reduction_factor)]


def _halve(plan: Plan, sweep: Folder, setup: Setup, reference: Reference | None, order: list[str],
           max_concurrent: int) -> int:
    """Synchronous successive halving: all trials of a rung train to it (one Tune experiment per
    rung), then `halving_keeps` chooses who goes on, from the rung's checkpoint; the others get a
    `stopped` row of that rung. The last stage trains the survivors to the budget and evaluates
    them like a grid. Decisions are made again from the recorded FIDs, so a resumed sweep
    repeats them without training a finished rung again. Returns how many trials failed."""
    rows = finished(sweep, (*DONE, "error"))
    plan_order = [t.key for t in plan.trials]
    alive, failed = list(plan_order), 0
    for rung in plan.schedule.rungs(plan.budget):
        # this rung's cohort: the trials not stopped at an earlier one
        alive = [k for k in alive if not (rows.get(k, {}).get("status") == "stopped" and rows[k]["step"] < rung)]
        todo = [k for k in order if k in alive and math.isnan(fid_at(sweep, k, rung))]
        failed += _tune(plan, sweep, dataclasses.replace(setup, until=rung), reference, todo, max_concurrent)
        rows = finished(sweep, (*DONE, "error"))
        fids = {k: fid_at(sweep, k, rung) for k in alive}
        keep = halving_keeps(fids, plan.schedule.reduction_factor)
        for key in alive:
            if key not in keep and rows.get(key, {}).get("status") != "error":
                rows[key] = record_stopped(sweep, plan, plan.trial(key))
        shown = ", ".join(f"{k} ({fids[k]:.2f})" for k in keep)
        sys.stderr.write(f"[{plan.sweep} halving] step {rung}: {len(keep)} of {len(alive)} trials go on: {shown}\n")
        alive = keep
    todo = [k for k in order if k in alive and rows.get(k, {}).get("status") != "ok"]
    return failed + _tune(plan, sweep, setup, reference, todo, max_concurrent)
