"""`rpgan sweep`, `rpgan sweeps` and `rpgan results`: options wired to the sweep runner."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from analysis.limits import MAX_EVALUATIONS, MAX_FID_SAMPLES
from rpgan.cli.options import ADDRESS, GPUS, MLFLOW, SEED, TEXT, choice, example
from rpgan.config import MAX_STEPS
from rpgan.errors import UserError
from rpgan.presets import PRESETS
from sweeps import NAMES, get_sweep
from sweeps.spec import SEARCH_KEYS, Plan, Scheduler, plan, typed_values

import click

if TYPE_CHECKING:
    from rpgan.io.run import Folder

QUICK = click.option("--quick", is_flag=True, help="The CPU-sized variant on the embedded data set.")
STORAGE = click.option("--storage", type=TEXT, default="runs", show_default=True,
                       help="Where sweeps live: a path (shared by all nodes) or s3://...")
NAME = click.option("--name", type=TEXT, help="The sweep's folder under --storage [default: SWEEP, or SWEEP-quick].")
# Flags that change what a sweep computes: a resumed sweep keeps the values it started with.
PLAN_FLAGS = ("seed", "samples", "steps", "fid_samples", "evaluations", "space", "preset", "data", "scheduler",
              "grace_period", "reduction_factor", "eval_every", "eval_samples")


def _folder(sweep: str, quick: bool, storage: str, name: str | None) -> Folder:
    from rpgan.io.run import Folder  # pyarrow, torch: not for --help

    return Folder(storage, name or f"{sweep}{'-quick' if quick else ''}")


def _saved_plan(folder: Folder) -> Plan | None:
    from sweeps.runner import PLAN

    data = folder.read_bytes(PLAN)
    try:  # ValueError covers bad UTF-8 and bad JSON; RecursionError, JSON nested too deep
        return Plan.from_json(data.decode()) if data is not None else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        problem = f"{folder.uri}/{PLAN} is not a sweep plan ({type(e).__name__})"
        raise UserError(f"{problem}; choose another --name") from None


def _clashing(saved: Plan, given: dict[str, object]) -> list[str]:
    """The flags typed on a --resume (PLAN_FLAGS, their values as parsed) whose values differ from
    those the saved sweep was started with; untyped flags are not compared."""
    have = {"seed": saved.seed, "samples": saved.budget.samples, "steps": saved.budget.steps,
            "fid_samples": saved.budget.fid_samples, "evaluations": saved.budget.evaluations,
            "preset": saved.preset, "data": saved.data or PRESETS[saved.preset].data,
            **dataclasses.asdict(saved.schedule)}
    clashes = []
    for name, value in given.items():
        if name == "space":
            differs = any(typed_values(k, v) != saved.space.get(k) for k, v in parse_space(value).items())
        else:
            differs = value != have[name]
        if differs:
            clashes.append(f"--{name.replace('_', '-')}")
    return clashes


def parse_space(items: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """`--space blocks_per_bucket=1,5,20` -> {"blocks_per_bucket": ("1", "5", "20")}: text, which
    planning (sweeps.spec.typed_values) parses as each key's configuration field's type."""
    space = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values or key not in SEARCH_KEYS:
            raise UserError(f"--space takes KEY=V1,V2,... with KEY one of {', '.join(SEARCH_KEYS)}; got {item!r}")
        if key in space:
            raise UserError(f"--space {key} is given twice; give all its values at once, like {key}=V1,V2")
        # random_buckets values are bucket lists themselves ("1,3"): they are split by ";"
        space[key] = tuple(values.split(";" if key == "random_buckets" else ","))
    return space


@click.command("sweeps", epilog=example("rpgan sweeps"))
def list_sweeps() -> None:
    """List the named sweeps (sweeps/*.py), one line each."""
    width = max(map(len, NAMES)) + 1
    for name in NAMES:
        s = get_sweep(name)
        full, quick = plan(s, False, 0), plan(s, True, 0)
        click.echo(f"{name:{width}} {s.about}\n{'':{width}} full: {full.preset}, {len(full.trials)} trials x "
                   f"{full.budget.steps} steps | --quick: {quick.preset}, {len(quick.trials)} trials x "
                   f"{quick.budget.steps} steps")


@click.command(epilog=example("rpgan sweep ablation_blocks --quick --seed 0",
                               "rpgan sweep ablation_blocks --storage s3://bucket/sweeps --samples 3",
                               "rpgan sweep ablation_blocks --quick --samples 3 --scheduler asha",
                               "rpgan sweep random_buckets --quick --space random_buckets='all;1;all-but-1'",
                               "rpgan sweep rpgan_vs_standard --preset anime --data folder:/data/anime-faces"))
@click.argument("sweep_name", metavar="SWEEP")
@QUICK
# Upper bounds only (the plan refuses values too small, with its own messages): a typo must not
# train every trial and then fail, or allocate gigabytes, in the evaluation.
@click.option("--samples", type=click.IntRange(max=1000), help="Seeds per point of the search space [default: the "
              "sweep's].")
@SEED
@click.option("--steps", type=click.IntRange(max=MAX_STEPS), help="Generator steps per trial [default: the sweep's "
              "budget].")
@click.option("--fid-samples", type=click.IntRange(max=MAX_FID_SAMPLES),
              help="Generated (and real) images for FID and PRD per trial.")
@click.option("--evaluations", type=click.IntRange(max=MAX_EVALUATIONS),
              help="Random base paths for each trial's responsibility summary.")
@click.option("--space", multiple=True, metavar="KEY=V1,V2",
              help="Replace or add a search key, e.g. blocks_per_bucket=5,10 (random_buckets: values split by ;).")
@click.option("--preset", type=click.Choice(list(PRESETS)), help="Every trial starts from this preset [default: the "
              "variant's].")
@click.option("--data", type=TEXT, help="Every trial's data set (digits, cifar10, npz:PATH, folder:PATH ...) "
              "[default: the preset's].")
@click.option("--scheduler", type=choice(Scheduler), default="grid", show_default=True,
              help="grid: every trial to the end; asha: stop trials whose FID during training trails at a rung; "
              "halving: every trial to a rung, then the best 1/reduction-factor on to the next.")
@click.option("--grace-period", type=click.IntRange(max=MAX_STEPS), help="asha, halving: steps before the first rung "
              "[default: half the steps].")
@click.option("--reduction-factor", type=click.IntRange(max=100), help="asha, halving: 1 in this many trials goes "
              "on at each rung [default: 2].")
@click.option("--eval-every", type=click.IntRange(max=MAX_STEPS), help="Steps between FID evaluations during "
              "training, for curves [default: none; asha and halving evaluate at their rungs anyway].")
@click.option("--eval-samples", type=click.IntRange(max=MAX_FID_SAMPLES), help="Images of each evaluation during "
              "training [default: --fid-samples].")
@STORAGE
@NAME
@click.option("--shared-storage", is_flag=True, help="A local --storage is a mount every node of the cluster shares "
              "(NFS): checked, then used (without it a local path is refused on a cluster of several nodes).")
@click.option("--resume", is_flag=True, help="Continue the sweep in --storage/--name if it exists: finished and "
              "stopped trials are kept, failed and unfinished ones run again.")
@click.option("--workers-per-trial", type=click.IntRange(1), default=1, show_default=True,
              help="Ray Train workers of each trial.")
@GPUS
@click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1, show_default=True)
@click.option("--max-concurrent", type=click.IntRange(1), help="Trials at once [default: as many as the "
              "cluster's resources hold].")
@ADDRESS
@MLFLOW
@click.pass_context
def sweep(ctx: click.Context, sweep_name: str, quick: bool, samples: int | None, seed: int, steps: int | None,
          fid_samples: int | None, evaluations: int | None, space: tuple[str, ...], preset: str | None,
          data: str | None, scheduler: str, grace_period: int | None, reduction_factor: int | None,
          eval_every: int | None, eval_samples: int | None, storage: str, name: str | None, shared_storage: bool,
          resume: bool, workers_per_trial: int, gpus_per_worker: float | None, cpus_per_worker: float,
          max_concurrent: int | None, address: str | None, mlflow: str | None) -> None:
    """Run a named sweep on Ray Tune: each trial trains on Ray Train, then FID, PRD and responsibility.
    With --mlflow: one MLflow run for the sweep, a child per trial."""
    definition = get_sweep(sweep_name)
    folder = _folder(sweep_name, quick, storage, name)
    schedule = {"grace_period": grace_period, "reduction_factor": reduction_factor, "eval_every": eval_every,
                "eval_samples": eval_samples}
    wanted = plan(definition, quick, seed, parse_space(space), preset, data, scheduler, schedule, steps=steps,
                  fid_samples=fid_samples, evaluations=evaluations, samples=samples)
    saved = _saved_plan(folder)
    if saved is not None:
        if not resume:
            raise UserError(f"sweep {folder.uri} exists; pass --resume to continue it, or another --name")
        given = {f: ctx.params[f] for f in PLAN_FLAGS
                 if ctx.get_parameter_source(f) == click.core.ParameterSource.COMMANDLINE}
        if saved.sweep != sweep_name or saved.quick != quick:
            raise UserError(f"{folder.uri} holds sweep {saved.sweep} ({saved.variant}); check SWEEP, --quick, --name")
        clashes = _clashing(saved, given)
        if clashes:
            raise UserError(f"sweep {folder.uri} was started with other {' '.join(clashes)}; resume it without "
                            "them, or choose another --name")
        wanted = saved
    _run(wanted, folder, workers_per_trial, gpus_per_worker, cpus_per_worker, max_concurrent, address, shared_storage,
         mlflow)


def _run(chosen: Plan, folder: Folder, count: int, gpus: float | None, cpus: float, max_concurrent: int | None,
         address: str | None, shared_storage: bool, mlflow: str | None) -> None:
    from analysis.fanout import Fanout
    from rpgan.distributed.nodes import check_data_on_every_node, check_shared_storage, place
    from rpgan.distributed.ray_session import (
        Workers,
        connect,
        default_gpus,
        is_private,
        ray_address,
        refuse_before_start,
    )
    from rpgan.io.data import training_images
    from rpgan.io.run_lock import run_lock
    from rpgan.io.tracking import tracking_for
    from sweeps.results import DONE, finished
    from sweeps.runner import PLAN, WORKER_FLAGS, concurrency, run_sweep
    from sweeps.trial import trial_resources

    todo = set(t.key for t in chosen.trials) - set(finished(folder, DONE))
    # Every check (the data, Ray, the cluster's nodes and storage) comes before the plan is
    # written: a refused sweep leaves no sweep to --resume.
    dataset_size = len(training_images(chosen.trials[0].config)) if todo else 0
    with run_lock(folder, "rpgan sweep", "--name"):  # one sweep process per folder
        again = f"rpgan results {chosen.sweep}{' --quick' if chosen.quick else ''} --storage {folder.storage}"
        if folder.name != _folder(chosen.sweep, chosen.quick, folder.storage, None).name:
            again += f" --name {folder.name}"
        if not todo:
            click.echo(f"sweep {folder.uri}: all {len(chosen.trials)} trials have finished, nothing to do; `{again}` "
                       "shows them")
            return
        address = ray_address(address)
        refuse_before_start(address, count, cpus, gpus, "auto", WORKER_FLAGS)  # one trial's workers
        # a trial of several workers coordinates from a sliver of a CPU: a local Ray declares one more CPU for them
        spare = 1 if count > 1 and not address else 0
        said = connect(address, num_cpus=None if address else (os.cpu_count() or 1) + spare)
        why = f" (one more than this machine's {os.cpu_count()}: the trials' coordinators)" if spare else ""
        click.echo(said + why, err=True)
        gpus = default_gpus("auto") if gpus is None else gpus
        workers = Workers(count, gpus, cpus).validate()
        at_once = max_concurrent or concurrency(workers)
        if not is_private():  # a cluster: every node has its own disk; a trial must fit one node
            check_shared_storage(folder.local, shared_storage, "--shared-storage")
            check_data_on_every_node(chosen.trials[0].config.data)
            if count == 1:
                place(1, trial_resources(workers), WORKER_FLAGS)
            else:
                place(count, {"CPU": cpus, "GPU": gpus}, WORKER_FLAGS)
        folder.write_bytes(PLAN, chosen.to_json().encode())
        click.echo(f"sweep {chosen.sweep} ({chosen.variant}, {chosen.preset}): {len(chosen.trials)} trials x "
                   f"{chosen.budget.steps} steps, {at_once} at a time, each on {count} worker(s) ({cpus:g} CPU, "
                   f"{gpus:g} GPU) -> {folder.uri}", err=True)
        failed = run_sweep(chosen, folder, workers, at_once, Fanout(gpus_per_worker=gpus), dataset_size,
                           tracking_for(mlflow) if mlflow else None)
        click.echo(f"{len(finished(folder))} of {len(chosen.trials)} trials finished -> {folder.uri}/trials; `{again}` "
                   "prints the table and writes the summary plot")
        if failed:
            retry = again.replace("rpgan results", "rpgan sweep", 1) + " --resume"
            click.echo(f"rpgan: {failed} trial(s) failed (see the error column); `{retry}` runs them again", err=True)
            raise SystemExit(1)


@click.command(epilog=example("rpgan results ablation_blocks --quick",
                               "rpgan analyze --ckpt $(rpgan results ablation_blocks --quick --best)"))
@click.argument("sweep_name", metavar="SWEEP")
@QUICK
@STORAGE
@NAME
@click.option("--best", is_flag=True, help="Print only the checkpoint of the trial with the lowest FID.")
def results(sweep_name: str, quick: bool, storage: str, name: str | None, best: bool) -> None:
    """Print a sweep's results table and write its summary plot (summary.png in the sweep folder)."""
    get_sweep(sweep_name)
    folder = _folder(sweep_name, quick, storage, name)
    saved = _saved_plan(folder)
    if saved is None:
        raise UserError(f"no sweep at {folder.uri}; run `rpgan sweep {sweep_name}{' --quick' if quick else ''}` "
                        "first, or check --storage/--name")
    if best:
        click.echo(_best(folder))
        return
    _show(folder, saved)


def _best(folder: Folder) -> str:
    from sweeps.results import read_table

    rows = read_table(folder, "trials")
    ok = rows[(rows["status"] == "ok") & rows["fid"].notna()]
    if ok.empty:
        raise UserError(f"no finished trial with an FID in {folder.uri} yet; run or --resume the sweep")
    return str(ok.sort_values("fid").iloc[0]["ckpt"])


def _show(folder: Folder, chosen: Plan) -> None:
    """The results table, the summary over seeds, the summary plot and where everything is."""
    from rpgan.metrics.quality import COLUMNS
    from rpgan.training.curves import plot_curves
    from sweeps.plot import plot_summary
    from sweeps.results import read_table, summarise_trials

    import pandas as pd

    trials = read_table(folder, "trials")
    order = {t.key: i for i, t in enumerate(chosen.trials)}
    trials = trials.sort_values("trial", key=lambda s: s.map(order))
    shown = [chosen.x, "seed", "blocks", "status", "step", *COLUMNS, "train_time_s", "eval_time_s"]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        click.echo(f"{len(trials)} of {len(chosen.trials)} trials have results:\n"
                   f"{trials[shown].round(3).to_string(index=False)}")
        if (trials["status"] == "ok").any():
            summary = summarise_trials(trials, chosen.x).round(3)
            click.echo(f"\nmean and std over seeds:\n{summary.to_string(index=False)}")
    x_order = list(dict.fromkeys(t.point[chosen.x] for t in chosen.trials))
    title = (f"{chosen.sweep} ({chosen.variant}: {chosen.preset}, {chosen.budget.steps} steps, FID on "
             f"{chosen.budget.fid_samples} images)")
    if (trials["status"] == "ok").any():
        responsibility = read_table(folder, "responsibility") if "responsibility" in chosen.metrics else None
        folder.write_bytes("summary.png", plot_summary(trials, responsibility, chosen.x, x_order, title))
        click.echo(f"\nsummary plot: {folder.uri}/summary.png\nbest checkpoint (lowest FID): {_best(folder)}")
    metrics = read_table(folder, "metrics")
    if not metrics.empty:
        folder.write_bytes("curves.png", plot_curves(metrics, f"{chosen.sweep} ({chosen.variant}): training curves",
                                                     by=chosen.x, order=x_order))
        click.echo(f"curves: {folder.uri}/curves.png")
    click.echo(f"results: pandas.read_parquet('{folder.uri}/trials'), responsibility: "
               f"pandas.read_parquet('{folder.uri}/responsibility'), training rows: "
               f"pandas.read_parquet('{folder.uri}/metrics')")
