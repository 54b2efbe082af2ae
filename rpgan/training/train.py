"""Training a run: where its checkpoints, metrics and grids go (an rpgan.io.run.Run, a local path
or a URI), how it resumes, and who persists its checkpoints. One implementation for every driver:

- in this process (`train`, what `rpgan train --out`, `extend` and the tests use);
- a sweep trial's own process (sweeps.trial);
- each worker of a Ray Train group (rpgan.distributed.ray_train).

They differ only in how a checkpoint is persisted and where the logged rows are reported
(`Driver`). Every run resumes from its newest checkpoint that loads. The steps themselves are
rpgan.training.loop's. No Ray here.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpgan.config import ModelConfig, RunConfig
from rpgan.errors import UserError
from rpgan.io.data import ImageData, training_images
from rpgan.io.images import render, save_grid, save_layer_grid
from rpgan.io.remote import download
from rpgan.io.run import METRICS_FILE, TENSORBOARD, Mirror, Run
from rpgan.io.tracking import Tracker, Tracking
from rpgan.model.extend import add_blocks, freeze_old_blocks
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import (
    TrainingState,
    derived_training_state,
    latest_config,
    load_generator,
    load_training_state,
    new_training_state,
    newest_loadable,
    read_step,
    resolve_checkpoint,
    write_checkpoint,
)
from rpgan.training.loop import fit, preview_latent
from rpgan.training.replica import SOLO, Replica
from rpgan.training.run_log import RunLog, read_rows, reported

import torch

STOP = ".stop"  # in a run: asks its training to end at the next logged step (a scheduler's decision)
# What training draws into a run, beside what Run keeps there (rpgan.io.run): a new file here is
# named here and drawn here, and a new run's folder check accepts it.
SAMPLES = "samples"  # the sample grid of every --sample-every step
SAMPLES_GRID, FROZEN_PATH_GRID, TRAVERSALS_GRID = "samples.png", "frozen_path.png", "traversals.png"  # at the end
OUTPUTS = frozenset({SAMPLES, SAMPLES_GRID, FROZEN_PATH_GRID, TRAVERSALS_GRID})
Write = Callable[[Path], None]  # writes a checkpoint's files into an empty local folder


@dataclass(frozen=True)
class Driver:
    """What differs between the drivers of a run.

    persist(run, step, write, row): the lead makes the checkpoint that `write` writes the run's
    checkpoint of `step` (older ones pruned), and reports `row` with it;
    report(row): a logged row (every replica calls it at the same steps);
    agree(value): rank 0's value, on every replica."""

    persist: Callable[[Run, int, Write, dict], None] = lambda run, step, write, row: run.put_checkpoint(step, write)
    report: Callable[[dict], None] = lambda row: None
    agree: Callable[[Any], Any] = lambda value: value


class Stopped(Exception):
    """Raised on every replica at the same step once the run holds STOP."""


def restore(run: Run, config: RunConfig, device: str, lead: bool, agree: Callable[[Any], Any],
            start: TrainingState | None = None) -> tuple[TrainingState, list[dict]]:
    """The newest loadable checkpoint of the run, with its metrics rows; `start` (or a fresh
    state) if the run has none. The lead chooses (saying which newer ones it skipped and why) and
    every replica loads the same one. The run directory is searched, not a driver's own record of
    what was reported: a checkpoint cut short by a crash, or corrupted since, fails to load."""
    def load(step: int) -> tuple[int, TrainingState, list[dict]]:
        if run.local:
            ckpt = Path(run.checkpoint(step))
            state = load_training_state(ckpt, config, device)
            return step, state, read_rows(ckpt, state.step)
        with tempfile.TemporaryDirectory(prefix="rpgan-restore-") as folder:  # not kept: read into memory
            ckpt = download(run.checkpoint(step), Path(folder) / "checkpoint")
            state = load_training_state(ckpt, config, device)
            return step, state, read_rows(ckpt, state.step)

    found = newest_loadable(run.checkpoint_steps(), load, say=_say) if lead else None
    step = agree(found[0] if found else None)
    if step is None:
        return start or new_training_state(config, device), []
    if lead:
        _say(f"resuming {run.uri} from step {step} ({run.checkpoint_name(step).rpartition('/')[2]})")
    _, state, rows = found if lead else load(step)
    return state, rows


def train_run(config: RunConfig, run: Run, device: str, driver: Driver = Driver(), replica: Replica = SOLO,
              data: ImageData | None = None, start: TrainingState | None = None, stoppable: bool = False,
              after_step: Callable[[int], None] | None = None, quiet: bool = False,
              tracking: Tracking | None = None) -> None:
    """Train `config` in `run` from its newest loadable checkpoint (or `start`, or fresh models)
    to config.train.steps (or, when `stoppable`, until the run holds STOP: then it ends at a
    logged step, the same one on every replica, like a finished run). The lead (rank 0) writes
    the checkpoints, metrics.parquet, TensorBoard events and sample grids; for a run behind a URI
    the last two are written locally and mirrored into the run at each checkpoint and at the end.
    `data`: the training images (default: the config's); `tracking`: where the lead also logs
    the settings, rows and grids (the MLflow run of this run's URI, rpgan.io.tracking)."""
    lead = replica.rank == 0
    data = training_images(config) if data is None else data
    state, rows = restore(run, config, device, lead, driver.agree, start)
    staging = tempfile.TemporaryDirectory(prefix="rpgan-run-") if lead and run.local is None else None
    root = run.local if staging is None else Path(staging.name)
    mirror = Mirror(run, root) if staging else None
    if staging and state.step and run.exists(TENSORBOARD):  # its events, trimmed (RunLog) and mirrored back
        download(f"{run.uri}/{TENSORBOARD}", root / TENSORBOARD)
    tracker = Tracker(tracking, run.name, run.uri) if lead and tracking else None
    log = RunLog(run.name, config, replica.world, rows, str(root / TENSORBOARD), state.step, tracker) if lead else None

    # Every logged row is reported; at a checkpoint the row rides with the checkpoint, so a driver
    # sees each step once.
    carried = {"step": -1}

    def save(state: TrainingState) -> None:
        last = log.rows[-1] if lead and log.rows else {}
        row = reported(last) if last.get("step") == state.step else {"step": state.step}
        carried["step"] = state.step
        if not lead:
            driver.report(row)
            return
        metrics = log.to_parquet()
        driver.persist(run, state.step, lambda folder: write_checkpoint(folder, config, state, {METRICS_FILE: metrics}),
                       row)
        run.write_bytes(METRICS_FILE, metrics)  # after the checkpoint: never ahead of what a resume restores
        if mirror:
            log.flush()
            mirror.sync()

    def publish(step: int, row: dict) -> None:
        if step != carried["step"]:
            driver.report(reported(row) if lead else {"step": step})
        # the lead looks, every replica learns the same answer at the same step
        if stoppable and driver.agree(lead and run.exists(STOP)):
            raise Stopped

    failed = True
    try:
        fit(config, data, state, device, save, log, replica, samples=root / SAMPLES if lead else None,
            after_step=after_step, quiet=quiet or not lead, publish=publish)
        failed = False
    except Stopped:
        failed = False  # asked to stop: a normal end, at the last checkpoint persisted
    finally:
        if log:
            log.close(failed)
        if mirror:
            mirror.sync()
            staging.cleanup()


def finished_checkpoint(run: Run, config: RunConfig) -> str | None:
    """The final checkpoint of the run if it already reached config.train.steps and loads whole,
    else None (a final checkpoint cut short by a kill mid-upload is trained again from the one
    before; if none loads, training says so)."""
    steps = run.checkpoint_steps()
    if not steps or steps[-1] < config.train.steps:
        return None
    try:
        load_training_state(resolve_checkpoint(run.checkpoint(steps[-1])), config, "cpu")
    except UserError as e:
        _say(f"skipping {e}")
        return None
    return run.checkpoint(steps[-1])


def finish(run: Run, step: int) -> str:
    """After training: the run's samples.png and layer grid from its checkpoint of `step`, which
    it returns (a local path, or a URI)."""
    final = run.checkpoint(step)
    if run.local is not None:
        save_final_grids(load_generator(final)[0], run.local)
        return final
    with tempfile.TemporaryDirectory(prefix="rpgan-grids-") as grids:
        save_final_grids(load_generator(final)[0], Path(grids))
        run.upload(Path(grids))
    return final


def train(config: RunConfig, data: ImageData, run_dir: Path, device: str = "cpu", resume: bool = False,
          quiet: bool = False, start: TrainingState | None = None, tracking: Tracking | None = None) -> Path:
    """Train in this process until config.train.steps into the local run directory run_dir
    (`train_run`). `start` is the state of a new run (default: fresh models). Refuses to mix
    runs: an existing run without `resume`, another model or data set, a directory holding
    anything but a run. Returns the final checkpoint."""
    run = Run.at(run_dir)
    check_local_run(run, config, resume)
    done = finished_checkpoint(run, config)
    if done:
        _say(f"{run_dir} is already at step {read_step(done)}, at or past --steps {config.train.steps}: nothing to "
             "train (pass a larger --steps to continue it)")
        return Path(done)
    train_run(config, run, device, data=data, start=start, quiet=quiet, tracking=tracking)
    return Path(finish(run, run.checkpoint_steps()[-1]))


def check_local_run(run: Run, config: RunConfig, resume: bool) -> None:
    """Refuse what an in-process run must not write into (see `train`); removes the temporaries
    of writes killed mid-way."""
    if run.checkpoint_steps():
        if not resume:
            raise UserError(f"{run.local} already holds a run; pass --resume to continue it or choose another --out")
        run.remove_leftovers()
        saved = latest_config(run)
        if saved.model != config.model or saved.data != config.data:
            raise UserError(f"{run.local} was trained with another model or data set; drop the differing flags "
                            "or choose another --out")
    elif run.local.is_dir() and (foreign := run.foreign_files(OUTPUTS)):
        raise UserError(f"--out {run.local} holds other files ({', '.join(foreign[:3])}); choose a new or empty "
                        "directory for the run")


def layer_grid_name(model: ModelConfig) -> str:
    """The PNG showing what each layer does for one sample: Figure 3, or EigenGAN traversals."""
    return TRAVERSALS_GRID if model.arch == "eigengan" else FROZEN_PATH_GRID


def save_final_grids(generator: Generator, run_dir: Path) -> None:
    """samples.png (the preview paths), and `layer_grid_name` for the first preview sample."""
    paths, z = preview_latent(generator)
    save_grid(render(generator, paths, z), run_dir / SAMPLES_GRID)
    save_layer_grid(generator, paths[0], None if z is None else z[0], run_dir / layer_grid_name(generator.cfg))


def start_extension(source: Path, add: Sequence[int], steps: int, seed: int, device: str = "cpu",
                    data: str | None = None, labels: str = "") -> tuple[RunConfig, TrainingState]:
    """Incremental learning (section 4.3): the generator of checkpoint `source` with add[i] new
    blocks in bucket i (initialised from `seed`), only those trainable, for `steps` more steps
    on `data` (default: the checkpoint's). Returns the run's config and its start state, for
    `train(config, images, out, start=state)`."""
    generator, config, source = load_generator(source)
    torch.manual_seed(seed)  # initialises the new blocks
    grown = add_blocks(generator, add)
    freeze_old_blocks(grown, config.model.blocks)
    schedule = dataclasses.replace(config.train, frozen_blocks=config.model.blocks,
                                   steps=read_step(source) + steps, seed=seed)
    config = dataclasses.replace(config, model=grown.cfg, train=schedule, data=data or config.data, labels=labels)
    return config, derived_training_state(source, grown.train(), device)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
