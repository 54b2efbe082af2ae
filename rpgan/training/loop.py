"""Training: one RPGAN step as a plain function, and the loop (`fit`) that runs steps, logs,
evaluates, draws sample grids and asks its caller to save checkpoints. Where a run lives and how
it resumes is rpgan.training.train's business."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from rpgan.config import RunConfig, TrainConfig
from rpgan.io.data import FolderData, ImageData, to_float
from rpgan.io.images import render, save_grid
from rpgan.io.loader import Prefetched
from rpgan.io.progress import Progress
from rpgan.model.eigengan import orthogonality_loss
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import TrainingState
from rpgan.training.evaluation import Evaluation
from rpgan.training.losses import d_loss, diversity_loss, g_loss, gradient_penalty
from rpgan.training.replica import SOLO, Replica
from rpgan.training.run_log import RunLog

import numpy as np
import torch

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


def ema_beta(cfg: TrainConfig) -> float:
    """How much of the average a generator step keeps: half of it after ema_kimg thousand
    generated images of `cfg.batch` per step (stylegan2-ada's ema_beta, without its ramp-up)."""
    return 0.5 ** (cfg.batch / (cfg.ema_kimg * 1000))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, generator: torch.nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * generator for every parameter (the learned Z, every block
    of every bucket, frozen ones included) and every floating-point buffer (BatchNorm's running
    statistics, as BigGAN averages its whole state: the trained generator's statistics belong to
    its own weights); counters are copied."""
    pairs = [(a, b) for a, b in zip(ema.state_dict().values(), generator.state_dict().values())]
    averaged = [(a, b) for a, b in pairs if a.is_floating_point()]
    torch._foreach_lerp_([a for a, _ in averaged], [b for _, b in averaged], 1 - beta)
    for mine, theirs in pairs:
        if not mine.is_floating_point():
            mine.copy_(theirs)


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
    if state.ema is not None:  # every replica averages the same weights the same way: they stay equal
        update_ema(state.ema, G, ema_beta(cfg))
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
    shown = state.ema if state.ema is not None else state.generator  # what readers load: evaluated, drawn
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
                row = log.record(state.step, losses, evaluation(shown) if evaluated and evaluation else None)
        if progress:
            progress.update(state.step, {k: v for k, v in losses.items() if k not in unused})
            if row.get("fid") is not None:
                progress.say(f"step {state.step}: FID {row['fid']:.2f} of {cfg.eval_samples} images "
                             f"({row['eval_time_s']:.1f} s)")
        if samples and (done or (cfg.sample_every and state.step % cfg.sample_every == 0)):
            images = render(shown, *preview)
            png = samples / f"step_{state.step:08d}.png"
            save_grid(images, png)
            if log:
                log.add_grid(state.step, png)
        if done or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0):
            replica.check_in_sync(state.generator, state.discriminator, *([state.ema] if state.ema else []))
            save(state)
        if logged and publish:
            publish(state.step, row)
        if log and logged:
            log.tick(state.step)  # the next row times steps only, not grids or checkpoints
    if progress:
        progress.close()


def preview_latent(generator: Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 64 fixed paths (and z) shown in a run's sample grids: paths [64, n_buckets]."""
    return generator.sample_latent(64, torch.Generator().manual_seed(PREVIEW_SEED))
