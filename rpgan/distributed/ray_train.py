"""Distributed training on Ray Train (V2): a TorchTrainer whose workers each train the run
(`rpgan.training.train.train_run`).

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
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rpgan.config import RunConfig
from rpgan.distributed.ray_session import Workers
from rpgan.distributed.rendezvous import NodeBoundTorchConfig
from rpgan.errors import UserError
from rpgan.io.run import RUN_CONFIG, Run, checkpoint_step
from rpgan.io.tracking import Tracking
from rpgan.training.replica import Replica
from rpgan.training.train import Driver, Write, finish, train_run

import ray
import ray.train
import ray.train.collective
import ray.train.torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, ScalingConfig
from ray.train.torch import TorchTrainer


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

    def hook(self, replica: Replica, run: Run) -> Callable[[int], None]:
        marker = f".fault-{self.mode}-{self.step}"  # in shared storage: fires once per run, not per attempt

        def after_step(step: int) -> None:
            if step != self.step or replica.rank != replica.world - 1 or run.exists(marker):
                return
            run.write_bytes(marker, b"")
            if self.mode == "exit":
                os._exit(1)
            raise RuntimeError(f"fault injected after step {step} (--inject-fault)")

        return after_step


def train_on_ray(config: RunConfig, run: Run, workers: Workers, fault: Fault | None = None,
                 callbacks: Sequence[ray.train.UserCallback] = (), stoppable: bool = False,
                 tracking: Tracking | None = None) -> str:
    """Train config on the connected Ray cluster into run, resuming the run if it exists.
    `callbacks` see every report (a sweep passes Tune's, to follow the steps). `stoppable`: the
    run ends early, at the next logged step, once the file STOP is in it (the workers check at
    every logged step); it ends like a finished run, so Ray frees its resources. `tracking`:
    rank 0 also logs to MLflow (rpgan.io.tracking). Returns the
    last checkpoint's path or URI. Raises RuntimeError (one line) if it fails."""
    run.write_bytes(RUN_CONFIG, config.to_json().encode())
    resources = {"CPU": workers.cpus, **({"GPU": workers.gpus} if workers.gpus else {})}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"config": config.to_json(), "storage": run.storage, "name": run.name,
                           "cpus": workers.cpus, "fault": fault, "stoppable": stoppable,
                           "tracking": tracking},
        scaling_config=ScalingConfig(num_workers=workers.count, use_gpu=workers.gpus > 0,
                                     resources_per_worker=resources),
        torch_config=NodeBoundTorchConfig(),
        run_config=ray.train.RunConfig(name=run.name, storage_path=run.storage,
                                       failure_config=FailureConfig(max_failures=workers.max_failures),
                                       # rank 0 prunes (Run.prune_checkpoints): Ray's own
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
    return finish(run, checkpoint_step(result.checkpoint.path))


def _cause(e: BaseException) -> str:
    """The innermost error line of a Ray exception (its text nests the worker's traceback)."""
    lines = [line.strip() for line in str(e).splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _worker(loop: dict) -> None:
    """One Ray Train worker: `train_run` with Ray checkpoints and reports."""
    import torch

    torch.set_num_threads(max(1, int(loop["cpus"])))
    context = ray.train.get_context()
    replica = Replica(context.get_world_rank(), context.get_world_size())
    run = Run(loop["storage"], loop["name"])

    def persist(run: Run, step: int, write: Write, row: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            write(Path(folder))
            # Ray copies the checkpoint into the run's checkpoints/step_N (run.storage/run.name)
            ray.train.report(row, checkpoint=Checkpoint.from_directory(folder),
                             checkpoint_dir_name=Run.checkpoint_name(step))
        run.settle_checkpoint(step)

    driver = Driver(persist=persist, report=ray.train.report, agree=ray.train.collective.broadcast_from_rank_zero)
    fault: Fault | None = loop["fault"]
    train_run(RunConfig.from_json(loop["config"]), run, str(ray.train.torch.get_device()), driver, replica,
              stoppable=loop["stoppable"], after_step=fault.hook(replica, run) if fault else None,
              tracking=loop["tracking"])
