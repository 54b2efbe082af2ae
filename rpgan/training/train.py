"""Training: one RPGAN step as a plain function, and the loop that checkpoints a run."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rpgan.config import ModelConfig, RunConfig, TrainConfig
from rpgan.errors import UserError
from rpgan.io.atomic import atomic_write, remove_leftovers
from rpgan.io.data import FolderData, ImageData, to_float
from rpgan.io.images import render, save_grid, save_layer_grid
from rpgan.io.loader import Prefetched
from rpgan.io.progress import Progress
from rpgan.io.run_lock import LOCK
from rpgan.model.eigengan import orthogonality_loss
from rpgan.model.extend import add_blocks, freeze_old_blocks
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import (
    CHECKPOINTS,
    TrainingState,
    derived_training_state,
    latest_config,
    list_checkpoints,
    load_generator,
    load_training_state,
    new_training_state,
    newest_loadable,
    read_step,
    save_checkpoint,
)
from rpgan.training.evaluation import Evaluation
from rpgan.training.losses import d_loss, diversity_loss, g_loss, gradient_penalty
from rpgan.training.replica import SOLO, Replica
from rpgan.training.run_log import METRICS, TENSORBOARD, RunLog, read_rows

import numpy as np
import torch
from torchvision.utils import make_grid

PREVIEW_SEED = 1234  # the paths shown in the sample grids during training


def step_seed(seed: int, rank: int, step: int) -> int:
    """The training RNG's seed for one worker's step: a resumed run, and the same step on any
    worker count, draws the same numbers whether or not it was interrupted."""
    return int(np.random.SeedSequence([seed % 2**64, rank, step]).generate_state(1, np.uint64)[0] >> 1)


def data_draws(rng: torch.Generator, n_images: int, n: int, d_steps: int) -> torch.Tensor:
    """The indices [d_steps * n] of the real images of a step's discriminator updates, drawn with
    replacement. They are the first draws of the step's stream, so a loader knows them ahead."""
    return torch.cat([torch.randint(n_images, (n,), generator=rng) for _ in range(d_steps)])


def upcoming_draws(cfg: TrainConfig, rank: int, n: int, n_images: int, start: int) -> Iterator[torch.Tensor]:
    """`data_draws` of steps start .. cfg.steps - 1 of one replica, as train_step will draw them."""
    for step in range(start, cfg.steps):
        yield data_draws(torch.Generator().manual_seed(step_seed(cfg.seed, rank, step)), n_images, n, cfg.d_steps)


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(cfg: TrainConfig, device: str) -> torch.autocast:
    """The context of the forward passes: bf16 or fp16 autocast when `cfg.precision` asks, else a no-op."""
    return torch.autocast(torch.device(device).type, dtype=HALF.get(cfg.precision, torch.bfloat16),
                          enabled=cfg.precision in HALF)


def configure_device(cfg: TrainConfig, device: str) -> None:
    """TF32 and cuDNN autotuning as the run configuration says (CUDA only; nothing on a CPU)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark


def compile_static(state: TrainingState) -> None:
    """torch.compile the parts whose shapes do not change: the discriminator and the generator's
    shared layers (in place: the state dicts, hence checkpoints, are unchanged)."""
    state.discriminator.compile()
    shared = getattr(state.generator, "pre_output", None)
    if shared is not None and not isinstance(shared, torch.nn.Identity):
        shared.compile()


def update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor,
           model: torch.nn.Module, replica: Replica, batch: int) -> None:
    """One optimizer step on `loss` with gradients averaged over replicas. With fp16 the loss is
    scaled, and a step whose gradients overflow is skipped and the scale lowered."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    replica.average_gradients(model, batch)
    scaler.step(optimizer)
    scaler.update()


def train_step(state: TrainingState, data: ImageData, cfg: TrainConfig, device: str,
               replica: Replica = SOLO) -> dict[str, float]:
    """`cfg.d_steps` discriminator updates, then one generator update, on this replica's share
    of the global batch `cfg.batch` with gradients averaged over replicas. Returns its losses.
    The forward passes run in `cfg.precision`; the losses, the gradient penalty (a gradient of a
    gradient) and the diversity loss are computed in fp32."""
    G, D = state.generator, state.discriminator
    rng = state.rng.manual_seed(step_seed(cfg.seed, replica.rank, state.step))
    n = replica.share(cfg.batch)
    reals = to_float(data.batch(data_draws(rng, len(data), n, cfg.d_steps)).to(device, non_blocking=True))
    for real in reals.split(n):
        with torch.no_grad(), autocast(cfg, device):
            fake = G(*G.sample_latent(n, rng)).float()
        with autocast(cfg, device):
            if cfg.compile:  # one pass: a compiled D's spectral-norm vectors must not change before its backward
                real_logits, fake_logits = D(torch.cat([real, fake])).split(n)
            else:
                real_logits, fake_logits = D(real), D(fake)
        loss_d = d_loss(cfg.loss, real_logits.float(), fake_logits.float())
        if cfg.loss == "wgan-gp":
            loss_d = loss_d + cfg.gp_weight * gradient_penalty(D, real, fake, rng)
        update(state.opt_d, state.scaler_d, loss_d, D, replica, cfg.batch)

    with autocast(cfg, device):
        logits = D(G(*G.sample_latent(n, rng)))
    adversarial = g_loss(logits.float())
    diversity = diversity_loss(G) if cfg.diversity_weight else torch.zeros((), device=device)
    orthogonality = orthogonality_loss(G)  # EigenGAN's bases; 0 for RPGAN
    loss_g = adversarial + cfg.diversity_weight * diversity + cfg.orthogonality_weight * orthogonality
    update(state.opt_g, state.scaler_g, loss_g, G, replica, cfg.batch)
    replica.broadcast_buffers(G, D)
    state.step += 1
    return {"d_loss": loss_d.item(), "g_loss": adversarial.item(), "diversity": diversity.item(),
            "orthogonality": orthogonality.item()}


def fit(config: RunConfig, data: ImageData, state: TrainingState, device: str,
        save: Callable[[TrainingState], object], log: RunLog | None = None, replica: Replica = SOLO,
        samples: Path | None = None, after_step: Callable[[int], None] | None = None, quiet: bool = False,
        publish: Callable[[int, dict], None] | None = None) -> None:
    """Train from state.step to config.train.steps. Every `log_every` steps a metrics row goes to
    `log` (losses averaged over replicas), and every `eval_every` steps and at the `eval_at`
    steps the replica holding `log` adds FID (Evaluation) to its row; every `sample_every` steps
    a grid of fixed preview paths goes to `samples` (and TensorBoard); every `checkpoint_every` steps and
    at the end, after checking that the replicas agree, every replica calls save(state).
    `after_step(step)` runs after each step, `publish(step, row)` after each logged one (after
    save), on every replica (the row is the log's, or the losses where there is no log)."""
    cfg = config.train
    configure_device(cfg, device)
    if cfg.compile:
        compile_static(state)
    # the evaluation reads real images straight from the data set, not from the prefetched stream
    evaluation = Evaluation(config, data, device) if (cfg.eval_every or cfg.eval_at) and log else None
    if isinstance(data, FolderData) and cfg.data_workers:
        upcoming = upcoming_draws(cfg, replica.rank, replica.share(cfg.batch), len(data), state.step)
        data = Prefetched(data, upcoming, cfg.data_workers, pin_memory=torch.device(device).type == "cuda")
    try:
        _fit(config, data, state, device, save, log, replica, samples, after_step, quiet, publish, evaluation)
    finally:
        if isinstance(data, Prefetched):
            data.close()


def _fit(config: RunConfig, data: ImageData, state: TrainingState, device: str,
         save: Callable[[TrainingState], object], log: RunLog | None, replica: Replica,
         samples: Path | None, after_step: Callable[[int], None] | None, quiet: bool,
         publish: Callable[[int, dict], None] | None, evaluation: Evaluation | None) -> None:
    cfg = config.train
    preview = preview_latent(state.generator)
    progress = None if quiet else Progress(cfg.steps, start=state.step, label="step")
    unused = {"diversity"} if config.model.arch == "eigengan" else {"orthogonality"}  # not shown: always 0
    if log:
        log.add_config(config)
        log.tick(state.step)
    while state.step < cfg.steps:
        losses = train_step(state, data, cfg, device, replica)
        if after_step:
            after_step(state.step)
        done = state.step == cfg.steps
        # at eval_every's multiples and the eval_at steps only, not at the end: a short run of a
        # preset that evaluates often on a GPU (10k images) is not made to wait for one
        evaluated = cfg.eval_every and state.step % cfg.eval_every == 0 or state.step in cfg.eval_at
        logged = done or evaluated or state.step % cfg.log_every == 0
        row = losses
        if logged:
            losses = row = replica.mean(losses, cfg.batch, device)
            if log:
                row = log.record(state.step, losses, evaluation(state.generator) if evaluated and evaluation else None)
        if progress:
            progress.update(state.step, {k: v for k, v in losses.items() if k not in unused})
            if row.get("fid") is not None:
                progress.say(f"step {state.step}: FID {row['fid']:.2f} of {cfg.eval_samples} images "
                             f"({row['eval_time_s']:.1f} s)")
        if samples and (done or (cfg.sample_every and state.step % cfg.sample_every == 0)):
            images = render(state.generator, *preview)
            save_grid(images, samples / f"step_{state.step:08d}.png")
            if log:
                log.add_grid(state.step, make_grid((images + 1) / 2, nrow=8, padding=1).clamp(0, 1))
        if done or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0):
            replica.check_in_sync(state.generator, state.discriminator)
            save(state)
        if logged and publish:
            publish(state.step, row)
        if log and logged:
            log.tick(state.step)  # the next row times steps only, not grids or checkpoints
    if progress:
        progress.close()


# What an in-process run writes in its directory; a new run refuses a directory holding anything else.
RUN_LAYOUT = frozenset({CHECKPOINTS, "samples", TENSORBOARD, METRICS, "samples.png", "frozen_path.png",
                        "traversals.png", LOCK})


def prepare_run(config: RunConfig, run_dir: Path, resume: bool, device: str,
                start: TrainingState | None = None) -> tuple[TrainingState, list[dict], Path | None]:
    """The state to train from, the metrics rows it has logged and its checkpoint: `start` (or a
    fresh state) for a new run, or, when resuming, the newest checkpoint of run_dir that loads (a
    newer one that does not is skipped with a line on stderr). Refuses to mix runs, and to write a new run
    into a directory that holds anything but a run."""
    found = list_checkpoints(run_dir)
    if found and not resume:
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    if not found:
        foreign = sorted(p.name for p in Path(run_dir).iterdir() if p.name not in RUN_LAYOUT) \
            if Path(run_dir).is_dir() else []
        if foreign:
            raise UserError(f"--out {run_dir} holds other files ({', '.join(foreign[:3])}); choose a new or empty "
                            "directory for the run")
        return start or new_training_state(config, device), [], None
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINTS):  # temporaries of writes killed mid-way
        remove_leftovers(folder)
    saved = latest_config(found)
    if saved.model != config.model or saved.data != config.data:
        raise UserError(f"{run_dir} was trained with another model or data set; drop the differing flags "
                        "or choose another --out")

    def load(ckpt: Path) -> tuple[TrainingState, list[dict], Path]:
        state = load_training_state(ckpt, config, device)
        rows = read_rows(ckpt, state.step)
        print(f"resuming {run_dir} from step {state.step} ({ckpt.name})", file=sys.stderr)
        return state, rows, ckpt

    return newest_loadable(found, load, say=lambda line: print(line, file=sys.stderr))


def train(config: RunConfig, data: ImageData, run_dir: Path, device: str = "cpu", resume: bool = False,
          quiet: bool = False, start: TrainingState | None = None) -> Path:
    """Train in this process until config.train.steps, writing checkpoints, sample grids, the
    metrics (metrics.parquet, tensorboard/) under run_dir. `start` is the state of a new run
    (default: fresh models). Returns the final checkpoint."""
    run_dir = Path(run_dir)
    state, rows, resumed = prepare_run(config, run_dir, resume, device, start)
    if resumed and state.step >= config.train.steps:
        print(f"{run_dir} is already at step {state.step}, at or past --steps {config.train.steps}: nothing to "
              "train (pass a larger --steps to continue it)", file=sys.stderr)
        return resumed
    log = RunLog(run_dir.name, config, workers=1, rows=rows, tensorboard=str(run_dir / TENSORBOARD), step=state.step)
    saved = [resumed] if resumed else []

    def save(state: TrainingState) -> None:
        metrics = log.to_parquet()
        saved.append(save_checkpoint(run_dir, config, state, extra={METRICS: metrics}))
        atomic_write(run_dir / METRICS, lambda tmp: tmp.write_bytes(metrics))

    try:
        fit(config, data, state, device, save, log, samples=run_dir / "samples", quiet=quiet)
    finally:
        log.close()
    save_final_grids(state.generator, run_dir)
    return saved[-1]


def preview_latent(generator: Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 64 fixed paths (and z) shown in a run's sample grids: paths [64, n_buckets]."""
    return generator.sample_latent(64, torch.Generator().manual_seed(PREVIEW_SEED))


def layer_grid_name(model: ModelConfig) -> str:
    """The PNG showing what each layer does for one sample: Figure 3, or EigenGAN traversals."""
    return "traversals.png" if model.arch == "eigengan" else "frozen_path.png"


def save_final_grids(generator: Generator, run_dir: Path) -> None:
    """samples.png (the preview paths), and `layer_grid_name` for the first preview sample."""
    paths, z = preview_latent(generator)
    save_grid(render(generator, paths, z), run_dir / "samples.png")
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
