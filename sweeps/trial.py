"""One trial of a sweep, as Ray Tune runs it: train, evaluate, write its rows (trials,
responsibility, and its training's metrics rows). A trial the scheduler stops (--scheduler
asha) ends its training early and writes a `stopped` row instead.

A trial of one worker (the default) is a plain Tune function trainable, Ray's pattern for
single-process trials: its own process, holding the worker's CPUs and GPUs, trains the run
(`rpgan.training.train.train_run`, the same run directory and resume as Ray Train's) and then
evaluates it in-process. Tune reuses that process for the next trial, so its imports and its
Inception network stay loaded. A trial of several workers only coordinates (it holds a sliver
of a CPU): training runs on a Ray Train worker group, and the evaluation on as many analysis
actors of the same size once training has given its resources back.

Everything a trial writes is keyed by the trial, so running it again (a retry, a resumed sweep)
replaces, never duplicates: its run resumes from its last checkpoint, and its result rows
replace the old ones.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.analyze import AnalyzeConfig, measure
from analysis.fanout import Fanout
from analysis.fid import generated_features
from rpgan.config import RunConfig
from rpgan.distributed.ray_session import Workers
from rpgan.errors import UserError
from rpgan.io.run import METRICS_FILE, RUN_CONFIG, Folder, Run
from rpgan.io.tracking import Tracker, Tracking
from rpgan.metrics.features import Reference, measurement_id, score
from rpgan.metrics.quality import COLUMNS
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import load_generator, read_step
from rpgan.training.train import STOP, Driver, Write, finish, finished_checkpoint, train_run
from sweeps.results import write_rows
from sweeps.spec import Plan, Trial

import pyarrow.parquet as pq

RUNS = "runs"  # the trials' training runs, inside the sweep folder
TRAIN_TIME = "train_time.json"  # in a trial's run: the wall time of the training that finished it
REPORTED = (*COLUMNS, "step", "train_time_s", "eval_time_s", "status")


@dataclass(frozen=True)
class Setup:
    """What every trial of one sweep run shares."""

    plan: Plan
    storage: str  # the sweep folder's storage root (a path or a URI)
    name: str  # the sweep folder
    workers: Workers  # each trial's Train worker group; its evaluation uses as many actors
    dataset_size: int  # images in the training set (recorded in each checkpoint)
    until: int = 0  # halving: train to this rung only and report its FID there (0: the whole trial)
    tracking: Tracking | None = None  # each trial a child MLflow run of the sweep's (rpgan.io.tracking)


def run_trial(params: dict, setup: Setup, reference: Reference | None) -> None:
    """Tune function: train and evaluate the trial `params["trial"]` (a key of setup.plan), and
    write its rows; a failure writes an error row and raises. `reference`: the real images'
    Inception features, for FID and PRD."""
    import ray.tune

    trial = setup.plan.trial(params["trial"])
    sweep = Folder(setup.storage, setup.name)
    try:
        row = _train_and_evaluate(trial, setup, sweep, reference)
    except Exception as e:
        error = (str(e).strip().splitlines() or [type(e).__name__])[-1][:500]
        row = {"status": "error", "error": error}
        write_rows(sweep, "trials", setup.plan, trial, [row])
        if not isinstance(e, UserError):
            raise  # Tune runs the trial again (trial_retries), from its last checkpoint
        # bad input (data, a checkpoint) fails the same way every time: ended, not retried
    ray.tune.report({k: row.get(k, float("nan")) for k in REPORTED})


def ask_to_stop(sweep: Folder, key: str) -> None:
    """Ask trial `key`'s training to end at its next logged step (rpgan.training.train.STOP)."""
    Run(f"{sweep.uri}/{RUNS}", key).write_bytes(STOP, b"")


def gather_metrics(sweep: Folder, plan: Plan, trial: Trial) -> list[dict]:
    """Copy the metrics rows of the trial's training run (as of its last checkpoint) into the
    sweep's `metrics` table; returns them."""
    saved = Run(f"{sweep.uri}/{RUNS}", trial.key).read_bytes(METRICS_FILE)
    rows = pq.read_table(io.BytesIO(saved)).to_pylist() if saved is not None else []
    if rows:
        write_rows(sweep, "metrics", plan, trial, rows)
    return rows


def record_stopped(sweep: Folder, plan: Plan, trial: Trial) -> dict:
    """Write (and return) the `trials` row of a trial a scheduler stopped: the step, FID and PRD
    of the last rung it reached (where it was stopped; a trial checkpoints at every rung), that
    step's checkpoint, and its training time."""
    run = Run(f"{sweep.uri}/{RUNS}", trial.key)
    rungs = trial.config.train.eval_at
    evaluated = [r for r in gather_metrics(sweep, plan, trial) if r.get("fid") is not None and r["step"] in rungs]
    at = evaluated[-1] if evaluated else {"step": run.checkpoint_steps()[-1]}
    saved = run.read_text(TRAIN_TIME)
    row = {"status": "stopped", "step": at["step"], "ckpt": run.checkpoint(at["step"]),
           "train_time_s": json.loads(saved)["train_time_s"] if saved else float("nan"),
           **{k: at[k] for k in COLUMNS if k in at}}
    write_rows(sweep, "trials", plan, trial, [row])
    return row


def fid_at(sweep: Folder, key: str, step: int) -> float:
    """The FID trial `key`'s training measured at `step` (NaN if it has none)."""
    saved = Run(f"{sweep.uri}/{RUNS}", key).read_bytes(METRICS_FILE)
    rows = pq.read_table(io.BytesIO(saved)).to_pylist() if saved is not None else []
    return next((r["fid"] for r in rows if r["step"] == step and r.get("fid") is not None), float("nan"))


# A trial of several workers only waits on its Train run and analysis actors; it asks for a
# sliver of a CPU so that it never keeps a worker from starting. A local Ray declares one
# logical CPU more than the machine has to hold these slivers (sweeps.runner.concurrency).
TRIAL_CPU = 0.001


def trial_resources(workers: Workers) -> dict[str, float]:
    """What a trial's own process holds: the worker's CPUs and GPUs when it trains itself (one
    worker), else a sliver of a CPU, so that it never keeps its Ray Train workers from starting."""
    if workers.count == 1:
        return {"CPU": workers.cpus, **({"GPU": workers.gpus} if workers.gpus else {})}
    return {"CPU": TRIAL_CPU}


def trial_retries(workers: Workers) -> int:
    """How often Tune runs a failed trial again: a trial that trains itself is retried as often as
    Ray Train restarts a worker group (--max-failures), resuming from its last checkpoint; a
    trial of several workers leaves that to Ray Train."""
    return workers.max_failures if workers.count == 1 else 0


def _train(config: RunConfig, store: Run, workers: Workers, stoppable: bool, tracking: Tracking | None) -> str:
    """Train the trial's run (resuming it) on its own process or its Ray Train workers; returns
    its last checkpoint."""
    import ray.tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

    if workers.count > 1:
        from rpgan.distributed.ray_train import train_on_ray

        return train_on_ray(config, store, workers, callbacks=[TuneReportCallback()], stoppable=stoppable,
                            tracking=tracking)
    store.write_bytes(RUN_CONFIG, config.to_json().encode())

    def persist(run: Run, step: int, write: Write, row: dict) -> None:
        ray.tune.report({**row, CHECKPOINT_PATH_KEY: run.put_checkpoint(step, write)})

    train_run(config, store, _device(workers), Driver(persist=persist, report=ray.tune.report), stoppable=stoppable,
              tracking=tracking)
    return finish(store, store.checkpoint_steps()[-1])


def _train_timed(config: RunConfig, store: Run, workers: Workers, stoppable: bool, tracking: Tracking | None) -> str:
    """`_train`, its wall time added to the run's TRAIN_TIME (halving trains a trial rung by rung)."""
    start = time.monotonic()
    ckpt = _train(config, store, workers, stoppable, tracking)
    saved = store.read_text(TRAIN_TIME)
    before = json.loads(saved)["train_time_s"] if saved else 0.0
    store.write_bytes(TRAIN_TIME, json.dumps({"train_time_s": before + time.monotonic() - start}).encode())
    return ckpt


def _device(workers: Workers) -> str:
    """This process's device: Ray shows a trial holding a GPU that GPU alone, as cuda:0."""
    return "cuda" if workers.gpus else "cpu"


def _train_and_evaluate(trial: Trial, setup: Setup, sweep: Folder, reference: Reference | None) -> dict:
    import torch

    plan = setup.plan
    if setup.workers.count == 1:  # the trial's own process computes: as many threads as it holds CPUs
        torch.set_num_threads(max(1, int(setup.workers.cpus)))
    config = dataclasses.replace(trial.config, dataset_size=setup.dataset_size)
    store = Run(f"{sweep.uri}/{RUNS}", trial.key)
    if setup.until:  # a halving rung: train to it (its FID is measured there); the runner compares the trials
        rung = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=setup.until))
        if finished_checkpoint(store, rung) is None:
            _train_timed(rung, store, setup.workers, stoppable=False, tracking=setup.tracking)
        gather_metrics(sweep, plan, trial)
        return {"status": "rung", "step": setup.until, "fid": fid_at(sweep, trial.key, setup.until)}
    ckpt = finished_checkpoint(store, config) or \
        _train_timed(config, store, setup.workers, stoppable=plan.schedule.scheduler == "asha", tracking=setup.tracking)
    if store.exists(STOP) and read_step(ckpt) < config.train.steps:  # ended early (sweeps.spec.Schedule)
        return record_stopped(sweep, plan, trial)
    saved = store.read_text(TRAIN_TIME)
    train_time = json.loads(saved)["train_time_s"] if saved else float("nan")
    row = {"status": "ok", "train_time_s": train_time, "ckpt": ckpt}

    start = time.monotonic()
    w = setup.workers
    fan = Fanout(workers=0, device=_device(w)) if w.count == 1 else \
        Fanout(workers=w.count, gpus_per_worker=w.gpus, cpus_per_worker=w.cpus)
    seed, step = config.train.seed, read_step(ckpt)
    rows, during = gather_metrics(sweep, plan, trial), None
    if reference is not None:
        n = plan.budget.fid_samples
        wanted = measurement_id(reference, n, seed, frozenset(plan.metrics))
        during = _recorded(rows, step, wanted, {"n_generated": n, "n_reference": len(reference.features)})
    measured, summary = evaluate(plan, load_generator(ckpt)[0], ckpt, seed, reference, fan, during)
    row.update(measured, step=step)
    row["eval_time_s"] = time.monotonic() - start
    write_rows(sweep, "responsibility", plan, trial, summary)
    # The trial's row goes to its MLflow run before the row itself: a sweep killed between the two
    # evaluates the trial again on resume, rather than never tracking its row.
    if setup.tracking:
        tracker = Tracker(setup.tracking, trial.key, store.uri)
        tracker.metrics({f"trial/{k}": row.get(k) for k in (*COLUMNS, "train_time_s", "eval_time_s")}, step)
        tracker.close()
    write_rows(sweep, "trials", plan, trial, [row])  # last: a trial row means the trial is complete
    return row


def _recorded(rows: list[dict], step: int, wanted: str, sizes: dict[str, int]) -> dict | None:
    """FID and PRD as the trial's training measured them at `step` (with `sizes`, its images on
    each side), when that measurement is the one the trial's row needs (`wanted`, a
    rpgan.metrics.features.measurement_id: the same reference, paths and PRD), else None."""
    at = next((r for r in reversed(rows) if r.get("step") == step), {})
    return {**sizes, **{k: at[k] for k in (*COLUMNS, "measurement")}} if at.get("measurement") == wanted else None


def evaluate(plan: Plan, generator: Generator, ckpt: Path | str, seed: int, reference: Reference | None,
             fan: Fanout, measured: dict | None = None) -> tuple[dict, list[dict]]:
    """The plan's metrics of a trained generator (its checkpoint `ckpt`, which the workers of
    `fan` load): FID and PRD columns of its trials row, and its responsibility summary rows.
    `measured`: FID and PRD already measured on these paths and reference, kept as they are."""
    row, summary = dict(measured or {}), []
    with fan.holding(ckpt):  # both jobs on the same workers
        if "fid" in plan.metrics and measured is None:
            features = generated_features(generator, ckpt, plan.budget.fid_samples, seed, fan)
            row = score(features, reference, seed, frozenset(plan.metrics))[0]
        if "responsibility" in plan.metrics and max(generator.blocks) > 1:  # one path has nothing to vary
            cfg = AnalyzeConfig(evaluations=plan.budget.evaluations, seed=seed, grids=0)
            summary = measure(generator, ckpt, cfg, fan)[1].to_dict("records")
    return row, summary
