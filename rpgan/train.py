"""Training: one RPGAN step as a plain function, and the loop that checkpoints a run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from rpgan.checkpoint import (
    TrainingState,
    derived_training_state,
    list_checkpoints,
    load_generator,
    load_training_state,
    new_training_state,
    read_config,
    read_step,
    save_checkpoint,
)
from rpgan.config import RunConfig, TrainConfig
from rpgan.data import ImageData, to_float
from rpgan.errors import UserError
from rpgan.extend import add_blocks, freeze_old_blocks
from rpgan.images import render, save_frozen_path_grid, save_grid
from rpgan.losses import d_loss, diversity_loss, g_loss, gradient_penalty
from rpgan.progress import Progress

PREVIEW_SEED = 1234  # the paths shown in the sample grids during training


def real_batch(data: ImageData, n: int, rng: torch.Generator, device: str) -> torch.Tensor:
    """n training images drawn with replacement by `rng`: float [n, C, S, S] in [-1, 1]."""
    return to_float(data.batch(torch.randint(len(data), (n,), generator=rng))).to(device)


def train_step(state: TrainingState, data: ImageData, cfg: TrainConfig, device: str) -> dict[str, float]:
    """`cfg.d_steps` discriminator updates, then one generator update. Returns the losses."""
    G, D, rng = state.generator, state.discriminator, state.rng
    for _ in range(cfg.d_steps):
        real = real_batch(data, cfg.batch, rng, device)
        with torch.no_grad():
            fake = G(*state.generator.sample_latent(cfg.batch, rng))
        loss_d = d_loss(cfg.loss, D(real), D(fake))
        if cfg.loss == "wgan-gp":
            loss_d = loss_d + cfg.gp_weight * gradient_penalty(D, real, fake, rng)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        state.opt_d.step()

    fake = G(*G.sample_latent(cfg.batch, rng))
    adversarial = g_loss(D(fake))
    diversity = diversity_loss(G) if cfg.diversity_weight else torch.zeros((), device=device)
    state.opt_g.zero_grad(set_to_none=True)
    (adversarial + cfg.diversity_weight * diversity).backward()
    state.opt_g.step()
    state.step += 1
    return {"d_loss": loss_d.item(), "g_loss": adversarial.item(), "diversity": diversity.item()}


def prepare_run(config: RunConfig, run_dir: Path, resume: bool, device: str,
                start: TrainingState | None = None) -> TrainingState:
    """`start` (or a fresh state), or the latest checkpoint of run_dir when resuming.
    Refuses to mix runs."""
    found = list_checkpoints(run_dir)
    if found and not resume:
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    if not found:
        return start or new_training_state(config, device)
    saved = read_config(found[-1])
    if saved.model != config.model or saved.data != config.data:
        raise UserError(f"{run_dir} was trained with another model or data set; drop the differing flags "
                        "or choose another --out")
    return load_training_state(found[-1], config, device)


def train(config: RunConfig, data: ImageData, run_dir: Path, device: str = "cpu", resume: bool = False,
          quiet: bool = False, start: TrainingState | None = None) -> Path:
    """Train until config.train.steps, checkpointing and saving sample grids under run_dir.
    `start` is the state of a new run (default: fresh models). Returns the final checkpoint."""
    run_dir = Path(run_dir)
    cfg = config.train
    state = prepare_run(config, run_dir, resume, device, start)
    preview = state.generator.sample_latent(64, torch.Generator().manual_seed(PREVIEW_SEED))
    progress = Progress(cfg.steps, start=state.step, label="step")
    ckpt = list_checkpoints(run_dir)[-1] if state.step >= cfg.steps else None
    while state.step < cfg.steps:
        metrics = train_step(state, data, cfg, device)
        if not quiet:
            progress.update(state.step, metrics)
        done = state.step == cfg.steps
        if done or (cfg.sample_every and state.step % cfg.sample_every == 0):
            save_grid(render(state.generator, *preview), run_dir / "samples" / f"step_{state.step:08d}.png")
        if done or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0):
            ckpt = save_checkpoint(run_dir, config, state)
    if not quiet:
        progress.close()
    paths, z = preview
    save_grid(render(state.generator, paths, z), run_dir / "samples.png")
    save_frozen_path_grid(state.generator, paths[0], run_dir / "frozen_path.png", z=None if z is None else z[0])
    return ckpt


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
