"""A run kept in a RunStore (a local path or a URI), trained by whoever drives it: one Ray Train
worker of a group (rpgan.distributed.ray_train) or a sweep trial's own process (sweeps.trial).

Both keep the same directory (checkpoints/step_N, metrics.parquet, tensorboard/, samples/) and
resume the same way, from the newest checkpoint of the run that loads; only how a checkpoint
is persisted and where the logged rows are reported differ (`Driver`). No Ray here.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpgan.config import RunConfig
from rpgan.errors import UserError
from rpgan.io.atomic import fsync_tree
from rpgan.io.data import training_images
from rpgan.io.remote import download
from rpgan.io.run_store import Mirror, RunStore
from rpgan.training.checkpoint import (
    TrainingState,
    checkpoint_name,
    load_generator,
    load_training_state,
    new_training_state,
    newest_loadable,
    write_checkpoint,
)
from rpgan.training.replica import SOLO, Replica
from rpgan.training.run_log import METRICS, TENSORBOARD, RunLog, read_rows, reported
from rpgan.training.train import fit, save_final_grids

STOP = ".stop"  # in a run: asks its training to end at the next logged step (a scheduler's decision)


@dataclass(frozen=True)
class Driver:
    """What differs between the drivers of a stored run.

    persist(folder, step, row): the lead makes the checkpoint written in the temporary `folder`
    the run's checkpoints/step_N (and reports `row` with it);
    report(row): a logged row (every replica calls it at the same steps);
    agree(value): rank 0's value, on every replica."""

    persist: Callable[[Path, int, dict], None]
    report: Callable[[dict], None]
    agree: Callable[[Any], Any] = lambda value: value


class Stopped(Exception):
    """Raised on every replica at the same step once the run holds STOP."""


def restore(store: RunStore, config: RunConfig, device: str, lead: bool,
            agree: Callable[[Any], Any]) -> tuple[TrainingState, list[dict]]:
    """The newest loadable checkpoint of the run, with its metrics rows; a fresh state if the run
    has none. The lead chooses (saying which newer ones it skipped and why) and every replica
    loads the same one. The run directory is searched, not a driver's own record of what was
    reported: a checkpoint cut short by a crash, or corrupted since, fails to load."""
    def load(step: int) -> tuple[int, TrainingState, list[dict]]:
        if store.local:
            ckpt = store.local / checkpoint_name(step)
            state = load_training_state(ckpt, config, device)
            return step, state, read_rows(ckpt, state.step)
        with tempfile.TemporaryDirectory(prefix="rpgan-restore-") as folder:  # not kept: read into memory
            ckpt = download(f"{store.uri}/{checkpoint_name(step)}", Path(folder) / "checkpoint")
            state = load_training_state(ckpt, config, device)
            return step, state, read_rows(ckpt, state.step)

    found = newest_loadable(store.checkpoint_steps(), load, say=_say) if lead else None
    step = agree(found[0] if found else None)
    if step is None:
        return new_training_state(config, device), []
    if lead:
        _say(f"resuming {store.uri} from step {step}")
    _, state, rows = found if lead else load(step)
    return state, rows


def train_stored_run(config: RunConfig, store: RunStore, device: str, driver: Driver, replica: Replica = SOLO,
                     stoppable: bool = False, after_step: Callable[[int], None] | None = None) -> None:
    """Train `config` in `store` from its newest loadable checkpoint to config.train.steps (or,
    when `stoppable`, until the run holds STOP: then it ends at a logged step, the same one on
    every replica, like a finished run). The lead (rank 0) writes the checkpoints, metrics.parquet,
    TensorBoard events and sample grids; for a run behind a URI the last two are written locally
    and mirrored into the run at each checkpoint and at the end."""
    lead = replica.rank == 0
    data = training_images(config)
    state, rows = restore(store, config, device, lead, driver.agree)
    staging = tempfile.TemporaryDirectory(prefix="rpgan-run-") if lead and store.local is None else None
    root = store.local if staging is None else Path(staging.name)
    mirror = Mirror(store, root) if staging else None
    if staging and state.step and store.exists(TENSORBOARD):  # its events, trimmed (RunLog) and mirrored back
        download(f"{store.uri}/{TENSORBOARD}", root / TENSORBOARD)
    log = RunLog(store.name, config, replica.world, rows, str(root / TENSORBOARD), state.step) if lead else None

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
        with tempfile.TemporaryDirectory() as folder:
            write_checkpoint(Path(folder), config, state, extra={METRICS: metrics})
            driver.persist(Path(folder), state.step, row)
        if store.local:  # in place; on disk before anything older goes
            fsync_tree(store.local / checkpoint_name(state.step))
        store.prune_checkpoints(state.step)
        store.write_bytes(METRICS, metrics)  # after the checkpoint: never ahead of what a resume restores
        if mirror:
            log.flush()
            mirror.sync()

    def publish(step: int, row: dict) -> None:
        if step != carried["step"]:
            driver.report(reported(row) if lead else {"step": step})
        # the lead looks, every replica learns the same answer at the same step
        if stoppable and driver.agree(lead and store.exists(STOP)):
            raise Stopped

    try:
        fit(config, data, state, device, save, log, replica, samples=root / "samples" if lead else None,
            after_step=after_step, quiet=not lead, publish=publish)
    except Stopped:
        pass  # asked to stop: a normal end, at the last checkpoint persisted
    finally:
        if log:
            log.close()
        if mirror:
            mirror.sync()
            staging.cleanup()


def finished_checkpoint(store: RunStore, config: RunConfig) -> str | None:
    """The final checkpoint of the run if it already reached config.train.steps and loads, else
    None (a final checkpoint cut short by a kill mid-upload is trained again from the one before)."""
    steps = store.checkpoint_steps()
    if not steps or steps[-1] < config.train.steps:
        return None
    final = f"{store.uri}/{checkpoint_name(steps[-1])}"
    try:
        load_generator(final)
    except UserError as e:
        _say(f"skipping {e}")
        return None
    return final


def finish(store: RunStore, step: int) -> str:
    """After training: the run's samples.png and layer grid from its checkpoint of `step`, which
    it returns (a local path, or a URI)."""
    final = checkpoint_name(step)
    if store.local is not None:
        save_final_grids(load_generator(store.local / final)[0], store.local)
        return str(store.local / final)
    with tempfile.TemporaryDirectory(prefix="rpgan-grids-") as grids:
        save_final_grids(load_generator(f"{store.uri}/{final}")[0], Path(grids))
        store.upload(Path(grids))
    return f"{store.uri}/{final}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
