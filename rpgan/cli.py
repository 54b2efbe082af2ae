"""`rpgan` command line: options wired to library functions, nothing more.

Any bad input ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import torch

from rpgan.config import MAX_SEED, RunConfig, expand_blocks
from rpgan.errors import RemoteError, UserError
from rpgan.presets import PRESETS, get_preset

if TYPE_CHECKING:
    from rpgan.checkpoint import TrainingState
    from rpgan.ray_train import Fault
    from rpgan.run_store import RunStore


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    return device


DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
SEED = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
                    help="Seed for paths and samples.")
ADDRESS = click.option("--address", help="Ray cluster to join [default: $RAY_ADDRESS, else a local Ray].")
CKPT = click.option("--ckpt", required=True, help="Checkpoint or run: a directory, or a URI (s3://..., file://...).")


# Commands owned by the packages above the core, imported only when called: the core never
# imports analysis or sweeps.
ELSEWHERE = {"analyze": "analysis.commands:analyze", "fid": "analysis.commands:fid",
             "fid-stats": "analysis.commands:fid_stats", "dissect": "analysis.commands:dissect",
             "directions": "analysis.commands:directions", "compare": "analysis.commands:compare",
             "sweep": "sweeps.commands:sweep",
             "sweeps": "sweeps.commands:list_sweeps", "results": "sweeps.commands:results"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *ELSEWHERE])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in ELSEWHERE:
            module, attr = ELSEWHERE[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="rpgan")
def cli() -> None:
    """RPGAN: random paths as a GAN's latent space (Voynov & Babenko, arXiv 1912.10920)."""


# Flags that override a preset: click name -> (config section, field).
OVERRIDES = {
    "steps": ("train", "steps"), "batch": ("train", "batch"), "d_steps": ("train", "d_steps"),
    "loss": ("train", "loss"), "lr": ("train", "lr"), "diversity_weight": ("train", "diversity_weight"),
    "sample_every": ("train", "sample_every"), "checkpoint_every": ("train", "checkpoint_every"),
    "log_every": ("train", "log_every"), "orthogonality_weight": ("train", "orthogonality_weight"),
    "width": ("model", "width"), "eigen_dims": ("model", "eigen_dims"), "input": ("model", "input"),
    "linear": ("model", "linear"),
    "routing": ("model", "routing"), "arch": ("model", "arch"), "image_size": ("model", "image_size"),
}
# Flags that may change when a run is resumed (the rest must match the checkpoint).
RESUMABLE = {"steps", "sample_every", "checkpoint_every", "log_every"}


def build_config(preset: str, data: str | None, blocks: str | None, seed: int, flags: dict) -> RunConfig:
    """The preset, with every flag the user gave applied on top."""
    p = get_preset(preset)
    sections = {"model": {}, "train": {"seed": seed}}
    for name, value in flags.items():
        if value is not None:
            section, field = OVERRIDES[name]
            sections[section][field] = value
    model = dataclasses.replace(p.model, **sections["model"])
    if blocks is not None:
        model = dataclasses.replace(model, blocks=expand_blocks(blocks, model.natural_n_buckets))
    train = dataclasses.replace(p.train, **sections["train"])
    data = data or p.data
    if not data:
        raise UserError(f"preset {preset} has no downloadable data set; pass --data folder:PATH")
    return RunConfig(model=model.validate(), train=train.validate(), data=data, preset=preset)


@cli.command()
@click.option("--preset", type=click.Choice(list(PRESETS)), default="digits", show_default=True)
@click.option("--data", help="digits, digits-gray, mnist, colored-mnist, cifar10, npz:PATH, folder:PATH.")
@click.option("--labels", help="Train on these labels only: 0-6, or 1,3,5.")
@click.option("--blocks", help="Blocks per bucket: N for every bucket, or a list like 20,20,20,8.")
@click.option("--steps", type=int, help="Generator steps (total, also when resuming).")
@click.option("--batch", type=int)
@click.option("--d-steps", type=int, help="Discriminator steps per generator step.")
@click.option("--loss", type=click.Choice(["hinge", "wgan-gp"]))
@click.option("--lr", type=float)
@click.option("--diversity-weight", type=float, help="Weight of the block diversity loss.")
@click.option("--orthogonality-weight", type=float, help="EigenGAN: weight of the basis orthogonality regulariser.")
@click.option("--arch", type=click.Choice(["resnet", "dcgan", "fc", "eigengan"]))
@click.option("--image-size", type=int)
@click.option("--width", type=int, help="Generator channels.")
@click.option("--eigen-dims", type=int, help="EigenGAN: dimensions of each layer's subspace.")
@click.option("--input", type=click.Choice(["learned", "fixed", "gaussian"]),
              help="Learned Z (paper), fixed Z, or Gaussian z (standard GAN with --blocks 1).")
@click.option("--linear/--nonlinear", default=None, help="Identity instead of every ReLU (section 4.4).")
@click.option("--routing", type=click.Choice(["group", "gather", "loop"]))
@click.option("--sample-every", type=int)
@click.option("--checkpoint-every", type=int)
@SEED
@click.option("--out", type=click.Path(path_type=Path), help="Run directory [default: runs/PRESET].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint, if any.")
@DEVICE
@click.option("--log-every", type=int, help="Steps between rows of metrics.parquet and TensorBoard.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Ray Train workers sharing the batch (0: train in this process).")
@click.option("--gpus-per-worker", type=click.FloatRange(0), help="[default: 1 with --device cuda, or auto and "
              "GPUs in the cluster; else 0]")
@click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1, show_default=True)
@click.option("--storage", help="Where Ray runs live: a path (shared by all nodes) or s3://... [default: runs].")
@click.option("--name", help="Run name under --storage; the same name again resumes it [default: PRESET].")
@click.option("--max-failures", type=click.IntRange(0), default=3, show_default=True,
              help="Worker-group restarts from the last checkpoint before a Ray run fails.")
@ADDRESS
@click.option("--inject-fault", hidden=True, help="raise@STEP or exit@STEP: crash the last worker once.")
def train(preset: str, data: str | None, labels: str | None, blocks: str | None, seed: int, out: Path | None,
          resume: bool, device: str, workers: int, gpus_per_worker: float | None, cpus_per_worker: float,
          storage: str | None, name: str | None, max_failures: int, address: str | None, inject_fault: str | None,
          **flags) -> None:
    """Train an RPGAN (or an EigenGAN: --preset eigengan-*) in this process (--out), or on Ray Train
    workers (--workers, --storage, --name)."""
    from rpgan.checkpoint import latest_config, list_checkpoints
    from rpgan.run_store import plain_name

    given = (preset, data, labels, blocks, seed, flags)
    if workers:
        from rpgan.ray_train import Fault
        from rpgan.run_store import RunStore

        if out is not None and (storage or name):
            raise UserError("pass either --out or --storage/--name")
        fault = Fault.parse(inject_fault) if inject_fault else None
        store = RunStore(storage or str(out.parent if out else "runs"), name or (out.name if out else preset))
        config = _config(store.saved_config(), f"run {store.uri}", "--name", *given)
        _train_on_ray(config, store, device, address, fault, workers, gpus_per_worker, cpus_per_worker, max_failures)
        return
    if storage or name:
        if storage and "://" in storage:
            raise UserError("--storage with a URI needs Ray workers: add --workers N")
        out = Path(storage or "runs") / plain_name(name or preset)
    out = out or Path("runs") / preset
    device = pick_device(device)
    found = list_checkpoints(out) if resume else []
    config = _config(latest_config(found) if found else None, f"{out}", "--out", *given)
    _run_training(config, out, device, resume)


def _config(saved: RunConfig | None, where: str, other: str, preset: str, data: str | None, labels: str | None,
            blocks: str | None, seed: int, flags: dict) -> RunConfig:
    """A resumed run's saved config (flags must agree, see _resumed_config), or a new one."""
    if saved:
        return _resumed_config(saved, where, other, data, labels, blocks, seed, flags)
    return dataclasses.replace(build_config(preset, data, blocks, seed, flags), labels=labels or "")


def _train_on_ray(config: RunConfig, store: RunStore, device: str, address: str | None, fault: Fault | None, count: int,
                  gpus: float | None, cpus: float, max_failures: int) -> None:
    import os

    from rpgan.ray_session import cluster_resources, connect
    from rpgan.ray_train import Workers, finished_checkpoint, train_on_ray

    done = finished_checkpoint(store, config)
    if done:
        click.echo(f"run {store.uri} already reached step {config.train.steps}: nothing to do (pass a larger "
                   f"--steps to train it further)\ncheckpoint: {done}")
        return
    from rpgan.atomic import remove_leftovers
    from rpgan.checkpoint import CHECKPOINTS
    from rpgan.data import training_images

    images = training_images(config)
    config = dataclasses.replace(config, dataset_size=len(images))
    store.create()
    if store.local:  # temporaries of writes killed mid-way (a URI's are the store's business)
        for folder in (store.local, store.local / CHECKPOINTS):
            remove_leftovers(folder)
    address = address or os.environ.get("RAY_ADDRESS")
    click.echo(connect(address, log_to_driver=True), err=True)
    have = cluster_resources()
    if gpus is None:
        gpus = 1.0 if device == "cuda" or (device == "auto" and have.get("GPU", 0) > 0) else 0.0
    workers = Workers(count, gpus, cpus, max_failures).validate()
    if not address and (count * cpus > have.get("CPU", 0) or count * gpus > have.get("GPU", 0)):
        raise UserError(f"{count} workers x ({cpus:g} CPU, {gpus:g} GPU) do not fit this machine "
                        f"({have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs); lower --workers or "
                        "--cpus-per-worker / --gpus-per-worker, or pass --address of a cluster")
    click.echo(f"training {config.preset} on {config.data} ({len(images)} images), blocks {list(config.model.blocks)}, "
               f"{config.train.steps} steps, global batch {config.train.batch} on {count} Ray workers "
               f"({cpus:g} CPU, {gpus:g} GPU each) -> {store.uri}", err=True)
    try:
        ckpt = train_on_ray(config, store, workers, fault)
    except RuntimeError as e:
        click.echo(f"rpgan: {e}", err=True)
        sys.exit(1)
    click.echo(f"checkpoint: {ckpt}\nmetrics: {store.uri}/metrics.parquet\ntensorboard: {store.uri}/tensorboard")


def _run_training(config: RunConfig, out: Path, device: str, resume: bool,
                  start: TrainingState | None = None) -> None:
    from rpgan.data import training_images
    from rpgan.train import layer_grid_name
    from rpgan.train import train as run_training

    images = training_images(config)
    config = dataclasses.replace(config, dataset_size=len(images))
    out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails here, in one line (see main)
    subset = f" labels {config.labels}" if config.labels else ""
    click.echo(f"training {config.preset} on {config.data}{subset} ({len(images)} images), blocks "
               f"{list(config.model.blocks)}, {config.train.steps} steps on {device} -> {out}", err=True)
    ckpt = run_training(config, images, out, device=device, resume=resume, start=start)
    click.echo(f"checkpoint: {ckpt}\nsamples: {out / 'samples.png'}\nlayers: {out / layer_grid_name(config.model)}\n"
               f"metrics: {out / 'metrics.parquet'}\ntensorboard: {out / 'tensorboard'}")


def _resumed_config(saved: RunConfig, where: str, other: str, data: str | None, labels: str | None,
                    blocks: str | None, seed: int, flags: dict) -> RunConfig:
    """The checkpoint's config; flags other than RESUMABLE ones must agree with it."""
    given = {k: v for k, v in flags.items() if v is not None}
    clashes = [f"--{k.replace('_', '-')}" for k, v in given.items()
               if k not in RESUMABLE and getattr(getattr(saved, OVERRIDES[k][0]), OVERRIDES[k][1]) != v]
    if data is not None and data != saved.data:
        clashes.append("--data")
    if labels is not None and labels != saved.labels:
        clashes.append("--labels")
    if blocks is not None and expand_blocks(blocks, saved.model.n_buckets) != saved.model.blocks:
        clashes.append("--blocks")
    if seed != saved.train.seed:
        clashes.append("--seed")
    if clashes:
        raise UserError(f"{where} was trained with other {', '.join(clashes)}; drop them to resume, "
                        f"or choose another {other}")
    resumable = {OVERRIDES[k][1]: v for k, v in given.items() if k in RESUMABLE}
    return dataclasses.replace(saved, train=dataclasses.replace(saved.train, **resumable).validate())


@cli.command()
@CKPT
@click.option("--n", type=click.IntRange(1, 4096), default=64, show_default=True, help="Images (random paths).")
@click.option("--path", "path_text", help="One frozen path, e.g. 3,0,17,5,2: render its Figure 3 grid instead.")
@click.option("--per-bucket", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="With --path: blocks shown per unfrozen bucket.")
@SEED
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples.png"), show_default=True)
@DEVICE
def sample(ckpt: str, n: int, path_text: str | None, per_bucket: int, seed: int, out: Path, device: str) -> None:
    """Render random paths as a grid, or one frozen path with each bucket unfrozen in turn."""
    from rpgan.atomic import atomic_write
    from rpgan.checkpoint import load_generator
    from rpgan.images import render, save_frozen_path_grid, save_grid
    from rpgan.paths import parse_path

    generator, _, _ = load_generator(ckpt, pick_device(device))
    rng = torch.Generator().manual_seed(seed)
    if path_text is not None:
        if generator.cfg.arch == "eigengan":
            raise UserError("an EigenGAN has no paths; its traversals are in the run's traversals.png "
                            "and in `rpgan analyze` output")
        path = parse_path(path_text, generator.blocks)
        z = torch.randn(generator.cfg.latent_dim, generator=rng) if generator.cfg.input == "gaussian" else None
        save_frozen_path_grid(generator, path, out, per_bucket=per_bucket, seed=seed, z=z)
    else:
        paths, z = generator.sample_latent(n, rng)
        save_grid(render(generator, paths, z), out)
        rows = "\n".join(",".join(map(str, p)) for p in paths.tolist())
        text = f"# path of each image, row-major, 0-based blocks\n{rows}\n"
        atomic_write(Path(f"{out}.paths.txt"), lambda tmp: tmp.write_text(text))
    click.echo(str(out))


@cli.command()
@CKPT
def info(ckpt: str) -> None:
    """Configuration, step, parameter counts, latent-space cardinality and coverage (Table 1)."""
    from rpgan.checkpoint import checkpoint_ref, load_generator, read_step
    from rpgan.model import build_discriminator
    from rpgan.paths import cardinality

    ckpt = checkpoint_ref(ckpt)  # the exact checkpoint, as a path or URI
    generator, config, _ = load_generator(ckpt)
    m = config.model
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    card = cardinality(m.blocks)
    click.echo(f"checkpoint   {ckpt}")
    click.echo(f"preset       {config.preset or '-'}    data {config.data} ({config.dataset_size} images)")
    click.echo(f"step         {read_step(ckpt)} of {config.train.steps}")
    click.echo(f"generator    {m.arch}, {m.image_size}x{m.image_size}x{m.channels}, input {m.input}, "
               f"{'linear' if m.linear else 'ReLU'}, width {m.width}")
    click.echo(f"training     {config.train.loss}, batch {config.train.batch}, d_steps {config.train.d_steps}, "
               f"lr {config.train.lr}, diversity weight {config.train.diversity_weight}, seed {config.train.seed}")
    click.echo(f"parameters   generator {count(generator):,}, discriminator {count(build_discriminator(m)):,}")
    if m.arch == "eigengan":
        for i, layer in enumerate(generator.buckets):
            click.echo(f"  layer {i + 1}    {m.eigen_dims}-dimensional subspace of a {tuple(layer.subspace.shape)} "
                       f"feature map, {count(layer):,} parameters")
        click.echo(f"latent space z of {m.latent_dim} dimensions: noise {m.z_dim} + {m.n_buckets} x {m.eigen_dims}")
        return
    for i, bucket in enumerate(generator.buckets):
        click.echo(f"  bucket {i + 1}   {type(bucket).__name__}: {m.blocks[i]} blocks x "
                   f"{count(bucket) // m.blocks[i]:,} parameters")
    coverage = f"{card / config.dataset_size:.4g}" if config.dataset_size else "-"
    click.echo(f"latent space {card:.4g} paths (prod of blocks per bucket); coverage {coverage} "
               f"(paths / training images)")


@cli.command()
@CKPT
@click.option("--add-blocks", required=True, help="New blocks per bucket, e.g. 5,5,0,0.")
@click.option("--data", help="Data set of the new training [default: the checkpoint's].")
@click.option("--labels", default="", help="Train on these labels only: 0-9, or 7,8,9 [default: all].")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True, help="Generator steps to train.")
@SEED
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory for the result.")
@DEVICE
def extend(ckpt: str, add_blocks: str, data: str | None, labels: str, steps: int, seed: int, out: Path,
           device: str) -> None:
    """Incremental learning (section 4.3): add blocks, then train only the new blocks."""
    from rpgan.train import start_extension

    try:
        add = [int(v) for v in add_blocks.split(",")]
    except ValueError:
        raise UserError(f"--add-blocks takes one count per bucket like 5,5,0,0, got {add_blocks!r}") from None
    device = pick_device(device)
    config, start = start_extension(ckpt, add, steps, seed, device, data=data, labels=labels)
    _run_training(config, out, device, resume=False, start=start)


@cli.command()
@CKPT
@click.option("--merge", required=True, help="Consecutive buckets to merge, 1-based as in the paper: 3-5.")
@click.option("--blocks", "k", type=int, required=True, help="Blocks of the merged bucket (random products).")
@SEED
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory for the result.")
def compress(ckpt: str, merge: str, k: int, seed: int, out: Path) -> None:
    """Merge consecutive linear buckets of a fully-connected generator into one (section 4.4)."""
    import json

    from rpgan.checkpoint import (
        checkpoint_ref,
        derived_training_state,
        list_checkpoints,
        load_generator,
        save_checkpoint,
    )
    from rpgan.compress import merge_buckets, parse_merge

    if list_checkpoints(out):
        raise UserError(f"{out} already holds a run; choose another --out")
    ckpt = checkpoint_ref(ckpt)
    generator, config, source = load_generator(ckpt)
    first, last = parse_merge(merge)
    compressed, tuples = merge_buckets(generator, first, last, k, torch.Generator().manual_seed(seed))
    state = derived_training_state(source, compressed, "cpu")
    merged = {"source": ckpt, "merged_buckets": [first + 1, last + 1], "seed": seed,
              "tuples": tuples.tolist()}
    new_config = dataclasses.replace(config, model=compressed.cfg)
    saved = save_checkpoint(out, new_config, state, extra={"merge.json": json.dumps(merged)})
    click.echo(f"buckets {first + 1}-{last + 1} -> one bucket of {k} blocks; blocks now "
               f"{list(compressed.blocks)}\ncheckpoint: {saved}")


# OSError numbers that `main` reports in one line (see there).
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST,
               errno.EISDIR, errno.ENAMETOOLONG}


def main() -> None:
    """Entry point: every user error is one line on stderr and exit code 2; a failure of remote
    storage is one line and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx else "rpgan"
        click.echo(f"{command}: {e.format_message()} (see {command} --help)", err=True)
        sys.exit(2)
    except UserError as e:
        click.echo(f"rpgan: {e}", err=True)
        sys.exit(2)
    except RemoteError as e:
        click.echo(f"rpgan: {e}", err=True)
        sys.exit(1)
    except click.Abort:
        click.echo("rpgan: interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        # Only conditions of the file system the user points rpgan at (--out, --storage, --ckpt):
        # a read-only or full disk, no permission, a path through a regular file, a name too long.
        # They carry a path and the user can act on them; any other OSError (ENOENT of a file
        # rpgan itself wrote, EIO, ...) may be a bug and keeps its traceback.
        if e.errno not in USER_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""  # pyarrow.fs errors name the path in strerror
        reason = " ".join(str(e.strerror or e).split())
        click.echo(f"rpgan: {where}{reason}; check that path, or choose another --out or --storage", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
