"""Checkpoints: one directory that rebuilds and resumes a run.

    config.json        RunConfig (model, training protocol, data set, preset)
    generator.pt       generator state dict
    discriminator.pt   discriminator state dict
    train_state.pt     step, both optimizer states, the training RNG state

A run directory keeps its checkpoints as checkpoints/step_NNNNNNNN/, each written atomically.
Tensors are read with weights_only=True: a checkpoint is untrusted input. Every problem with
one (missing, truncated, mismatched) is a one-line UserError.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rpgan.config import RunConfig
from rpgan.errors import UserError
from rpgan.io.atomic import atomic_dir
from rpgan.io.remote import checkpoint_uri, is_uri, local_checkpoint
from rpgan.model.extend import freeze_old_blocks
from rpgan.model.networks import Generator, build_discriminator, build_generator

import torch
from torch import nn

CONFIG, GENERATOR, DISCRIMINATOR, TRAIN_STATE = "config.json", "generator.pt", "discriminator.pt", "train_state.pt"
CHECKPOINTS = "checkpoints"  # a run directory's folder of step_N checkpoints
STEP_DIR = re.compile(r"^step_(\d+)$")
KEEP = 3  # checkpoints a run keeps
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


def save_checkpoint(run_dir: Path, config: RunConfig, state: TrainingState, keep: int = KEEP,
                    extra: dict[str, str | bytes] | None = None) -> Path:
    """Write checkpoints/step_N atomically under run_dir, flushed to disk, then delete what
    `prunable` says. Returns the checkpoint."""
    ckpt = atomic_dir(Path(run_dir) / checkpoint_name(state.step),
                      lambda tmp: write_checkpoint(tmp, config, state, extra))
    found = {checkpoint_step(p): p for p in list_checkpoints(run_dir)}
    for step in prunable(list(found), state.step, keep):
        shutil.rmtree(found[step], ignore_errors=True)
    return ckpt


def prunable(steps: list[int], step: int, keep: int = KEEP) -> list[int]:
    """The checkpoints to delete once the one of `step` is safely written: all but the newest
    `keep` at or before `step`. Newer ones (a run resumed from an older checkpoint because its
    newest failed to load) are never counted: each is replaced when the run reaches its step, so
    no valid checkpoint is deleted in favour of one that does not exist yet."""
    return sorted(s for s in steps if s <= step)[:-keep]


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


def checkpoint_name(step: int) -> str:
    """Where the checkpoint of `step` lives inside a run directory: checkpoints/step_NNNNNNNN."""
    return f"{CHECKPOINTS}/step_{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoint directories, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_step(ckpt: Path | str) -> int:
    """The step in a checkpoint directory's name (.../step_NNNNNNNN)."""
    return int(STEP_DIR.match(str(ckpt).rstrip("/").rpartition("/")[2]).group(1))


def resolve_checkpoint(path: Path | str) -> Path:
    """A checkpoint directory itself, or the newest checkpoint of a run directory, as a local
    directory; a URI (s3://..., file://...) is resolved the same way and fetched once into the
    local cache (rpgan.io.remote)."""
    if is_uri(path):
        return local_checkpoint(str(path))
    path = Path(path)
    if (path / CONFIG).is_file():
        return path
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; pass a run directory (--out of rpgan train) "
                        "or one of its checkpoints/step_* directories")
    found = list_checkpoints(path)
    if not found:
        raise UserError(f"{path} holds no rpgan checkpoint (no config.json, no checkpoints/step_*)")
    return found[-1]


def checkpoint_ref(path: Path | str) -> str:
    """The exact checkpoint a path or URI names, as the user would name it: a local directory,
    or the URI of the checkpoint (a run's newest)."""
    return checkpoint_uri(str(path)) if is_uri(path) else str(resolve_checkpoint(path))


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


def latest_config(found: Sequence[Path]) -> RunConfig:
    """The RunConfig of the newest of a run's checkpoints `found` (oldest first) whose config.json
    reads (see newest_loadable)."""
    return newest_loadable(found, read_config, say=lambda line: None)


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


def load_generator(path: Path | str, device: str = "cpu") -> tuple[Generator, RunConfig, Path]:
    """Rebuild the generator from config.json alone and load its weights (eval mode).
    `path` is a checkpoint or run directory, or a URI of one. Returns (generator, config, the
    checkpoint as a local directory)."""
    ckpt = resolve_checkpoint(path)
    config = read_config(ckpt)
    generator = build_generator(config.model)
    _load_into(generator, _read_tensors(ckpt, GENERATOR), ckpt, GENERATOR)
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
                         _scaler(generator, fp16), _scaler(discriminator, fp16))


def generator_optimizer(generator: Generator, config: RunConfig) -> torch.optim.Optimizer:
    """Adam over the generator's trainable parameters (all but frozen ones)."""
    t = config.train
    return torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=t.lr, betas=t.betas)


def load_training_state(ckpt: Path, config: RunConfig, device: str) -> TrainingState:
    """The state saved in `ckpt`, ready to continue training on `device`."""
    state = new_training_state(config, device)
    _load_into(state.generator, _read_tensors(ckpt, GENERATOR), ckpt, GENERATOR)
    _load_into(state.discriminator, _read_tensors(ckpt, DISCRIMINATOR), ckpt, DISCRIMINATOR)
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
                         state.rng, _scaler(generator, state.scaler_g.is_enabled()), state.scaler_d, state.step)
