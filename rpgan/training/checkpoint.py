"""Checkpoints: one directory that rebuilds and resumes a run.

    config.json        RunConfig (model, training protocol, data set, preset)
    generator.pt       generator state dict
    generator_ema.pt   the moving average of its weights (runs with --ema-kimg only)
    discriminator.pt   discriminator state dict
    train_state.pt     step, both optimizer states, the training RNG state

A run keeps its checkpoints as checkpoints/step_NNNNNNNN/, each written whole (rpgan.io.run.Run).
Tensors are read with weights_only=True: a checkpoint is untrusted input. Every problem with
one (missing, truncated, mismatched) is a one-line UserError.
"""

from __future__ import annotations

import copy
import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rpgan.config import GeneratorWeights, RunConfig, generator_weights
from rpgan.errors import UserError
from rpgan.io.remote import is_uri, local_checkpoint
from rpgan.io.run import CHECKPOINT_CONFIG, STEP_DIR, Run, checkpoint_location, checkpoint_step
from rpgan.model.extend import freeze_old_blocks
from rpgan.model.networks import Generator, build_discriminator, build_generator

import torch
from torch import nn

CONFIG, GENERATOR, DISCRIMINATOR, TRAIN_STATE = CHECKPOINT_CONFIG, "generator.pt", "discriminator.pt", "train_state.pt"
GENERATOR_EMA = "generator_ema.pt"

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class TrainingState:
    """Everything that changes during training, in memory."""

    generator: Generator
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator  # CPU generator: paths, Gaussian z, data indices, GP interpolation
    # fp16: the loss scales of G's and D's updates (disabled, and saved empty, otherwise)
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    step: int = 0
    ema: Generator | None = None  # the moving average of the generator's weights (--ema-kimg), else None


def _scaler(model: nn.Module, enabled: bool) -> torch.amp.GradScaler:
    """A loss scaler on the model's device; disabled, it passes losses and steps through unchanged."""
    return torch.amp.GradScaler(next(model.parameters()).device.type, enabled=enabled)


def write_checkpoint(folder: Path, config: RunConfig, state: TrainingState,
                     extra: dict[str, str | bytes] | None = None) -> None:
    """Write a checkpoint's files into an existing, empty `folder`. `extra` maps file names to
    text or bytes saved beside (metrics, how a checkpoint was derived)."""
    folder = Path(folder)
    (folder / CONFIG).write_text(config.to_json())
    for name, content in (extra or {}).items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    _save(state.generator.state_dict(), folder / GENERATOR)
    if state.ema is not None:
        _save(state.ema.state_dict(), folder / GENERATOR_EMA)
    _save(state.discriminator.state_dict(), folder / DISCRIMINATOR)
    _save({"step": state.step, "opt_g": state.opt_g.state_dict(), "opt_d": state.opt_d.state_dict(),
           "rng": state.rng.get_state(), "scaler_g": state.scaler_g.state_dict(),
           "scaler_d": state.scaler_d.state_dict()}, folder / TRAIN_STATE)


def _save(obj: object, file: Path) -> None:
    """torch.save, whose failure to write (a full disk: "unexpected pos" from its zip writer) is
    an OSError like any other write's, so the command says it in one line."""
    try:
        torch.save(obj, file)
    except RuntimeError as e:
        disk = os.statvfs(file.parent)  # a failed write leaves the disk full (to users, or to root too)
        full = min(disk.f_bavail, disk.f_bfree) * disk.f_frsize < 1 << 20
        raise OSError(errno.ENOSPC if full else errno.EIO, os.strerror(errno.ENOSPC) if full else
                      f"torch could not write {file.name} ({str(e).splitlines()[0][:120]})", str(file)) from None


def save_checkpoint(run: Run, config: RunConfig, state: TrainingState,
                    extra: dict[str, str | bytes] | None = None) -> str:
    """Write the checkpoint of state.step into `run` (Run.put_checkpoint: whole or not at all,
    older ones pruned). Returns it."""
    return run.put_checkpoint(state.step, lambda folder: write_checkpoint(folder, config, state, extra))


def newest_loadable(candidates: Sequence[T], load: Callable[[T], R], say: Callable[[str], None]) -> R | None:
    """load(c) of the newest candidate (candidates oldest first) that loads: each one whose
    load raises a UserError (truncated, unreadable, not matching) is skipped with a line to
    `say`. None without candidates; a UserError if none loads (nothing is started over)."""
    failures = []
    for candidate in reversed(candidates):
        try:
            return load(candidate)
        except UserError as e:
            failures.append(str(e))
            say(f"skipping {e}")
    if failures:
        raise UserError(f"no checkpoint of this run loads (newest: {failures[0]}); repair or remove them, "
                        "or start another run")
    return None


def resolve_checkpoint(path: Path | str) -> Path:
    """The checkpoint a `--ckpt` names (a checkpoint, or a run: its newest) as a local directory;
    one behind a URI (s3://..., file://...) is fetched once into the local cache (rpgan.io.remote)."""
    exact = checkpoint_location(path)
    return local_checkpoint(exact) if is_uri(exact) else Path(exact)


def read_config(ckpt: Path) -> RunConfig:
    """The checkpoint's RunConfig; any problem with config.json (unreadable, not UTF-8, not JSON,
    wrong types or values) is a one-line UserError."""
    try:
        data = (ckpt / CONFIG).read_bytes()  # bytes: RunConfig.from_json reports bad UTF-8 as one line
    except OSError as e:
        raise UserError(f"checkpoint {ckpt}: cannot read {CONFIG} ({e.strerror})") from None
    try:
        return RunConfig.from_json(data)
    except UserError as e:
        raise UserError(f"checkpoint {ckpt}: {e}") from None


def latest_config(run: Run) -> RunConfig | None:
    """The RunConfig of the newest checkpoint of a local run whose config.json reads (see
    newest_loadable); None if the run has no checkpoint."""
    return newest_loadable([Path(c) for c in run.checkpoints()], read_config, say=lambda line: None)


def _read_tensors(ckpt: Path, name: str, mmap: bool = False) -> dict:
    """A checkpoint file's tensors; `mmap`: mapped, not read, until used (to read only a scalar)."""
    file = ckpt / name
    if not file.is_file():
        raise UserError(f"checkpoint {ckpt} is incomplete: {name} is missing; use another checkpoint")
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated zip, foreign pickle, unsafe globals ...
        raise UserError(f"checkpoint {ckpt}: {name} {_unreadable(e)}; use another checkpoint") from None


def _unreadable(e: Exception) -> str:
    """Why torch could not load a checkpoint file, in words of our own: torch's text suggests
    weights_only=False, which would run code from an untrusted file."""
    text = str(e)
    if "Weights only load failed" in text:
        return "holds objects other than tensors (rpgan loads tensors only: a checkpoint is untrusted input)"
    if "zip archive" in text or "central directory" in text:
        return "is truncated (not a whole zip archive)"
    return f"is not a torch weights file ({type(e).__name__})"


def _load_into(module: nn.Module | torch.optim.Optimizer, state: dict, ckpt: Path, name: str) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        detail = " ".join(str(e).split())[:200]
        raise UserError(f"checkpoint {ckpt}: {name} does not match its {CONFIG} ({detail})") from None


def load_generator(path: Path | str, device: str = "cpu",
                   weights: GeneratorWeights = "auto") -> tuple[Generator, RunConfig, Path]:
    """Rebuild the generator from config.json alone and load its weights (eval mode): the moving
    average of a run with one (--ema-kimg) unless `weights` is "raw", the trained weights
    otherwise (`generator_weights` says which). `path` is a checkpoint or run directory, or a URI
    of one. Returns (generator, config, the checkpoint as a local directory)."""
    ckpt = resolve_checkpoint(path)
    config = read_config(ckpt)
    generator = build_generator(config.model)
    name = GENERATOR_EMA if generator_weights(config, weights) == "ema" else GENERATOR
    _load_into(generator, _read_tensors(ckpt, name), ckpt, name)
    return generator.to(device).eval(), config, ckpt


def read_step(ckpt: Path | str) -> int:
    """The step of a checkpoint (a local directory or URI): its directory's name, else the step in
    train_state.pt, read with the optimizer states mapped, not loaded."""
    name = str(ckpt).rstrip("/").rpartition("/")[2]
    if STEP_DIR.match(name):
        return checkpoint_step(name)
    return int(_read_tensors(resolve_checkpoint(ckpt), TRAIN_STATE, mmap=True)["step"])


def new_training_state(config: RunConfig, device: str) -> TrainingState:
    """Fresh models and optimizers; model initialisation is seeded by config.train.seed."""
    torch.manual_seed(config.train.seed)
    generator = build_generator(config.model).to(device)
    if config.train.frozen_blocks:
        freeze_old_blocks(generator, config.train.frozen_blocks)
    discriminator = build_discriminator(config.model).to(device)
    t = config.train
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=t.lr, betas=t.betas)
    rng = torch.Generator().manual_seed(t.seed)
    fp16 = t.precision == "fp16"
    return TrainingState(generator, discriminator, generator_optimizer(generator, config), opt_d, rng,
                         _scaler(generator, fp16), _scaler(discriminator, fp16), ema=new_ema(generator, config))


def new_ema(generator: Generator, config: RunConfig) -> Generator | None:
    """The moving average's start, a copy of `generator` that trains no further, when the run keeps
    one (no random numbers drawn: training is the same with or without it)."""
    return copy.deepcopy(generator).requires_grad_(False).eval() if config.train.ema_kimg else None


def generator_optimizer(generator: Generator, config: RunConfig) -> torch.optim.Optimizer:
    """Adam over the generator's trainable parameters (all but frozen ones)."""
    t = config.train
    return torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=t.lr, betas=t.betas)


def load_training_state(ckpt: Path, config: RunConfig, device: str) -> TrainingState:
    """The state saved in `ckpt`, ready to continue training on `device`."""
    state = new_training_state(config, device)
    _load_into(state.generator, _read_tensors(ckpt, GENERATOR), ckpt, GENERATOR)
    _load_into(state.discriminator, _read_tensors(ckpt, DISCRIMINATOR), ckpt, DISCRIMINATOR)
    if state.ema is not None:
        _load_into(state.ema, _read_tensors(ckpt, GENERATOR_EMA), ckpt, GENERATOR_EMA)
    saved = _read_tensors(ckpt, TRAIN_STATE)
    try:
        state.step = int(saved["step"])
        _load_into(state.opt_g, saved["opt_g"], ckpt, "generator optimizer state")
        _load_into(state.opt_d, saved["opt_d"], ckpt, "discriminator optimizer state")
        state.rng.set_state(saved["rng"])
        for name in ("scaler_g", "scaler_d"):  # absent before fp16 existed; empty when it was off
            if saved.get(name) and getattr(state, name).is_enabled():
                getattr(state, name).load_state_dict(saved[name])
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"checkpoint {ckpt}: {TRAIN_STATE} is not an rpgan training state ({e})") from None
    return state


def derived_training_state(ckpt: Path, generator: Generator, device: str) -> TrainingState:
    """A new generator (compressed, extended) with the discriminator, its optimizer, the RNG
    and the step of `ckpt`; the generator gets a fresh optimizer over its trainable parameters."""
    config = read_config(ckpt)
    state = load_training_state(ckpt, config, device)
    generator = generator.to(device)
    return TrainingState(generator, state.discriminator, generator_optimizer(generator, config), state.opt_d,
                         state.rng, _scaler(generator, state.scaler_g.is_enabled()), state.scaler_d, state.step,
                         ema=new_ema(generator, config))
