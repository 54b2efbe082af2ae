"""Distributed training on Ray Train (V2): a TorchTrainer whose workers each run `rpgan.training.train.fit`.

Each worker holds a whole G and D, samples its own random paths for its share of the global
batch (`Replica.share`), and gradients are averaged over workers after every backward
(`rpgan.training.replica`), over gloo on CPU and NCCL on GPU. Rank 0 writes the checkpoint directory of
an in-process run and reports it as the Ray Checkpoint under checkpoints/step_N of the run, so
`rpgan sample --ckpt STORAGE/NAME` reads a distributed run like any other. A crashed worker
makes Ray restart the group (FailureConfig); the group resumes from the last reported
checkpoint, metrics included. Re-running the same STORAGE/NAME continues it (Ray Train resumes
a run by its RunConfig name and storage path).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train
import ray.train.collective
import ray.train.torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from rpgan.config import RunConfig
from rpgan.distributed.rendezvous import NodeBoundTorchConfig
from rpgan.errors import UserError
from rpgan.io.atomic import fsync_tree
from rpgan.io.data import training_images
from rpgan.io.run_store import RUN_CONFIG, Mirror, RunStore
from rpgan.training.checkpoint import (
    TrainingState,
    checkpoint_name,
    checkpoint_step,
    load_generator,
    load_training_state,
    new_training_state,
    newest_loadable,
    write_checkpoint,
)
from rpgan.training.replica import Replica
from rpgan.training.run_log import METRICS, RunLog, read_rows, reported
from rpgan.training.train import fit, save_final_grids


@dataclass(frozen=True)
class Workers:
    """The worker group of a run: how many, and what each one holds."""

    count: int
    gpus: float = 0.0  # per worker; fractions share a GPU
    cpus: float = 1.0  # per worker; also its torch threads
    max_failures: int = 3  # worker-group restarts from the last checkpoint before the run fails

    def validate(self) -> Workers:
        if self.count < 1 or self.cpus <= 0 or self.gpus < 0 or self.max_failures < 0:
            raise UserError("--workers must be at least 1, --cpus-per-worker positive, --gpus-per-worker and "
                            "--max-failures non-negative")
        return self


@dataclass(frozen=True)
class Fault:
    """A crash injected once into the last worker after `step`, to check recovery end to end:
    `raise` raises an error, `exit` ends the worker process at once (os._exit)."""

    mode: str
    step: int

    @classmethod
    def parse(cls, text: str) -> Fault:
        mode, _, step = text.partition("@")
        if mode not in ("raise", "exit") or not step.isdigit() or int(step) < 1:
            raise UserError(f"--inject-fault takes raise@STEP or exit@STEP, got {text!r}")
        return cls(mode, int(step))

    def hook(self, replica: Replica, store: RunStore) -> Callable[[int], None]:
        marker = f".fault-{self.mode}-{self.step}"  # in shared storage: fires once per run, not per attempt

        def after_step(step: int) -> None:
            if step != self.step or replica.rank != replica.world - 1 or store.exists(marker):
                return
            store.write_bytes(marker, b"")
            if self.mode == "exit":
                os._exit(1)
            raise RuntimeError(f"fault injected after step {step} (--inject-fault)")

        return after_step


def finished_checkpoint(store: RunStore, config: RunConfig) -> str | None:
    """The final checkpoint of the run if it already reached config.train.steps, else None."""
    steps = store.checkpoint_steps()
    if steps and steps[-1] >= config.train.steps:
        return f"{store.uri}/{checkpoint_name(steps[-1])}"
    return None


STOP = ".stop"  # in a run: asks its training to end at the next logged step (a scheduler's decision)


def train_on_ray(config: RunConfig, store: RunStore, workers: Workers, fault: Fault | None = None,
                 callbacks: Sequence[ray.train.UserCallback] = (), stoppable: bool = False) -> str:
    """Train config on the connected Ray cluster into store, resuming the run if it exists.
    `callbacks` see every report (a sweep passes Tune's, to follow the steps). `stoppable`: the
    run ends early, at the next logged step, once the file STOP is in it (the workers check at
    every logged step); it ends like a finished run, so Ray frees its resources. Returns the
    last checkpoint's path or URI. Raises RuntimeError (one line) if it fails."""
    store.write_bytes(RUN_CONFIG, config.to_json().encode())
    resources = {"CPU": workers.cpus, **({"GPU": workers.gpus} if workers.gpus else {})}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"config": config.to_json(), "storage": store.storage, "name": store.name,
                           "cpus": workers.cpus, "fault": fault, "stoppable": stoppable},
        scaling_config=ScalingConfig(num_workers=workers.count, use_gpu=workers.gpus > 0,
                                     resources_per_worker=resources),
        torch_config=NodeBoundTorchConfig(),
        run_config=ray.train.RunConfig(name=store.name, storage_path=store.storage,
                                       failure_config=FailureConfig(max_failures=workers.max_failures),
                                       # rank 0 prunes (RunStore.prune_checkpoints): Ray's own
                                       # pruning counts a newest checkpoint that fails to load
                                       checkpoint_config=CheckpointConfig(num_to_keep=None),
                                       logging_config=ray.train.LoggingConfig(log_level="WARNING"),
                                       callbacks=list(callbacks)),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise RuntimeError(f"training failed after {workers.max_failures} restarts: {_cause(e)}; run the same "
                           "command again to resume from the last checkpoint") from None
    except ray.exceptions.RayError as e:  # e.g. a run directory Ray cannot resume
        raise RuntimeError(f"Ray could not run the training: {_cause(e)}") from None
    final = checkpoint_name(checkpoint_step(result.checkpoint.path))
    if store.local is not None:
        save_final_grids(load_generator(store.local / final)[0], store.local)
        return str(store.local / final)
    with tempfile.TemporaryDirectory(prefix="rpgan-grids-") as grids:
        save_final_grids(load_generator(f"{store.uri}/{final}")[0], Path(grids))
        store.upload(Path(grids))
    return f"{store.uri}/{final}"


def _cause(e: BaseException) -> str:
    """The innermost error line of a Ray exception (its text nests the worker's traceback)."""
    lines = [line.strip() for line in str(e).splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _restore(store: RunStore, config: RunConfig, device: str, lead: bool) -> tuple[TrainingState, list[dict]]:
    """The newest loadable checkpoint of the run, with its metrics rows; a fresh state if the run
    has none. Rank 0 chooses (saying which newer ones it skipped and why) and every worker loads
    the same one.

    The run directory is searched, not only Ray's own record (get_checkpoint): Ray collects
    reports by polling the workers, and a worker that dies right after a report takes the
    unpolled report with it, while rank 0 had persisted that checkpoint before anyone passed
    the next step. A checkpoint cut short by a crash, or corrupted since, fails to load."""
    def load(step: int) -> tuple[int, TrainingState, list[dict]]:
        with Checkpoint(f"{store.path}/{checkpoint_name(step)}", store.fs).as_directory() as folder:
            state = load_training_state(Path(folder), config, device)
            return step, state, read_rows(Path(folder), state.step)

    found = newest_loadable(store.checkpoint_steps(), load, say=_say) if lead else None
    step = ray.train.collective.broadcast_from_rank_zero(found[0] if found else None)
    if step is None:
        return new_training_state(config, device), []
    if lead:
        _say(f"resuming {store.uri} from step {step}")
    _, state, rows = found if lead else load(step)
    return state, rows


class _Stopped(Exception):
    """Raised on every worker at the same step once the run holds STOP."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _worker(loop: dict) -> None:
    """One Ray Train worker: restore or build the state, then `fit` with Ray checkpoints."""
    import torch

    torch.set_num_threads(max(1, int(loop["cpus"])))
    context = ray.train.get_context()
    replica = Replica(context.get_world_rank(), context.get_world_size())
    lead = replica.rank == 0
    config = RunConfig.from_json(loop["config"])
    store = RunStore(loop["storage"], loop["name"])
    device = str(ray.train.torch.get_device())
    data = training_images(config)
    state, rows = _restore(store, config, device, lead)
    # Rank 0 writes TensorBoard events and sample grids into the run, or, for a run behind a URI,
    # into a local folder that is mirrored into the run at each checkpoint and at the end.
    staging = tempfile.TemporaryDirectory(prefix="rpgan-run-") if lead and store.local is None else None
    root = store.local if staging is None else Path(staging.name)
    mirror = Mirror(store, root) if staging else None
    log = RunLog(store.name, config, replica.world, rows, str(root / "tensorboard")) if lead else None

    # Every logged row is reported (all workers report together: a report is a barrier); at a
    # checkpoint the row rides with the checkpoint, so Ray sees each step once.
    carried = {"step": -1}

    def save(state) -> None:
        last = log.rows[-1] if lead and log.rows else {}
        report = reported(last) if last.get("step") == state.step else {"step": state.step}
        carried["step"] = state.step
        if not lead:
            ray.train.report(report)
            return
        metrics = log.to_parquet()
        with tempfile.TemporaryDirectory() as folder:
            write_checkpoint(Path(folder), config, state, extra={METRICS: metrics})
            ray.train.report(report, checkpoint=Checkpoint.from_directory(folder),
                             checkpoint_dir_name=checkpoint_name(state.step))
        if store.local:  # Ray copied it into place; on disk before anything older goes
            fsync_tree(store.local / checkpoint_name(state.step))
        store.prune_checkpoints(state.step)
        store.write_bytes(METRICS, metrics)  # after the checkpoint: never ahead of what a resume restores
        if mirror:
            log.flush()
            mirror.sync()

    def publish(step: int, row: dict) -> None:
        if step != carried["step"]:
            ray.train.report(reported(row) if lead else {"step": step})
        # rank 0 looks, every worker learns the same answer at the same step
        if loop["stoppable"] and ray.train.collective.broadcast_from_rank_zero(lead and store.exists(STOP)):
            raise _Stopped

    fault: Fault | None = loop["fault"]
    try:
        fit(config, data, state, device, save, log, replica, samples=root / "samples" if lead else None,
            after_step=fault.hook(replica, store) if fault else None, quiet=not lead, publish=publish)
    except _Stopped:
        pass  # asked to stop: a normal end, at the last checkpoint reported
    finally:
        if log:
            log.close()
        if mirror:
            mirror.sync()
            staging.cleanup()
