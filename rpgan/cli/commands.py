"""rpgan's own commands: train, sample, info, extend and compress (the rest live in analysis and
sweeps). Options wired to library functions, nothing more."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rpgan.cli.options import (
    ADDRESS,
    CKPT,
    DEVICE,
    GENERATOR,
    GPUS,
    MLFLOW,
    PATH,
    PNG,
    SEED,
    TEXT,
    example,
    pick_device,
    setting_options,
    workers,
)
from rpgan.config import RunConfig
from rpgan.errors import UserError
from rpgan.overrides import Request
from rpgan.presets import DEFAULT_PRESET, PRESETS

import click

if TYPE_CHECKING:
    from rpgan.distributed.ray_train import Fault
    from rpgan.io.run import Run
    from rpgan.io.tracking import Tracking
    from rpgan.training.checkpoint import TrainingState


@click.command(epilog=example("rpgan train --steps 2000 --out runs/digits",
                              "rpgan train --preset cifar10 --blocks 20 --workers 4 --storage s3://bucket/runs",
                              "rpgan train --preset cifar10 --dry-run"))
@click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET, show_default=True)
@click.option("--data", type=TEXT, help="digits, digits-gray, mnist, colored-mnist, cifar10, npz:PATH, folder:PATH.")
@click.option("--labels", help="Train on these labels only: 0-6, or 1,3,5.")
@click.option("--blocks", help="Blocks per bucket: N for every bucket, or a list like 20,20,20,8.")
@setting_options
@SEED
@click.option("--out", type=PATH, help="Run directory [default: runs/PRESET].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint, if any.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration (the preset's values, your flags, "
              "or the resumed run's) as JSON and exit.")
@DEVICE
@workers(0, "0, one process trains fastest on one machine; Ray Train is for several GPUs or nodes")
@GPUS
@click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1, show_default=True)
@click.option("--storage", type=TEXT,
              help="Where Ray runs live: a path (shared by all nodes) or s3://... [default: runs].")
@click.option("--name", type=TEXT, help="Run name under --storage; the same name again resumes it [default: PRESET].")
@click.option("--shared-storage", is_flag=True, help="A local --storage is a mount every node of the cluster shares "
              "(NFS): checked, then used (without it a local path is refused on a cluster of several nodes).")
@click.option("--max-failures", type=click.IntRange(0), default=3, show_default=True,
              help="Worker-group restarts from the last checkpoint before a Ray run fails.")
@ADDRESS
@click.option("--no-eval", is_flag=True, help="No FID evaluations during training, whatever the preset says.")
@MLFLOW
@click.option("--inject-fault", hidden=True, help="raise@STEP or exit@STEP: crash the last worker once.")
def train(preset: str, data: str | None, labels: str | None, blocks: str | None, seed: int, out: Path | None,
          resume: bool, dry_run: bool, device: str, workers: int, gpus_per_worker: float | None,
          cpus_per_worker: float, storage: str | None, name: str | None, shared_storage: bool, max_failures: int,
          address: str | None, no_eval: bool, mlflow: str | None, inject_fault: str | None, **settings) -> None:
    """Train an RPGAN (or an EigenGAN: --preset eigengan-*) in this process (--out), or on Ray Train
    workers (--workers, --storage, --name). --eval-every N adds FID to the metrics every N steps."""
    from rpgan.io.data import check_labels
    from rpgan.io.run import Run, plain_name
    from rpgan.io.tracking import tracking_for
    from rpgan.training.checkpoint import latest_config

    if settings.get("eval_every") == 0:
        raise UserError("--eval-every must be at least 1 (steps between evaluations); --no-eval turns them off")
    if no_eval:
        settings["eval_every"] = 0
    tracking = tracking_for(mlflow) if mlflow else None
    # a resumed run keeps its own preset and seed: only values typed here are compared with them
    typed = click.get_current_context().get_parameter_source
    request = Request(preset if typed("preset") == click.core.ParameterSource.COMMANDLINE else None, data, labels,
                      blocks, seed if typed("seed") == click.core.ParameterSource.COMMANDLINE else None, settings)
    if workers:
        from rpgan.distributed.ray_train import Fault

        if out is not None and (storage or name):
            raise UserError("pass either --out or --storage/--name")
        fault = Fault.parse(inject_fault) if inject_fault else None
        run = Run(storage or str(out.parent if out else "runs"), name or (out.name if out else preset))
        config = request.config(run.saved_config(), f"run {run.uri}", "--name")
        check_labels(config.data, config.labels)
        if dry_run:
            click.echo(config.to_json())
            return
        _train_on_ray(config, run, device, address, fault, workers, gpus_per_worker, cpus_per_worker, max_failures,
                      shared_storage, tracking)
        return
    if storage or name:
        if storage and "://" in storage:
            raise UserError("--storage with a URI needs Ray workers: add --workers N")
        out = Path(storage or "runs") / plain_name(name or preset)
    out = out or Path("runs") / preset
    config = request.config(latest_config(Run.at(out)) if resume else None, f"{out}", "--out")
    check_labels(config.data, config.labels)
    if dry_run:
        click.echo(config.to_json())
        return
    _run_training(config, out, pick_device(device), resume, tracking=tracking)


def _train_on_ray(config: RunConfig, run: Run, device: str, address: str | None, fault: Fault | None, count: int,
                  gpus: float | None, cpus: float, max_failures: int, shared_storage: bool,
                  tracking: Tracking | None) -> None:
    from rpgan.distributed.nodes import check_data_on_every_node, check_shared_storage, place
    from rpgan.distributed.ray_session import Workers, connect, default_gpus, is_private, refuse_before_start
    from rpgan.distributed.ray_train import train_on_ray
    from rpgan.io.data import training_images
    from rpgan.io.run import METRICS_FILE, TENSORBOARD
    from rpgan.io.run_lock import run_lock
    from rpgan.training.train import finished_checkpoint

    done = finished_checkpoint(run, config)
    if done:
        click.echo(f"run {run.uri} already reached step {config.train.steps}: nothing to do (pass a larger "
                   f"--steps to train it further)\ncheckpoint: {done}")
        return
    images = training_images(config)
    config = dataclasses.replace(config, dataset_size=len(images))
    run.create()  # first: a storage that cannot be written is refused before Ray starts
    with run_lock(run, "rpgan train --workers", "--name"):  # a second writer goes no further
        run.remove_leftovers()  # of writes killed mid-way
        flags = "--workers, --cpus-per-worker or --gpus-per-worker"
        refuse_before_start(address, count, cpus, gpus, device, flags)  # no Ray started, nothing written
        click.echo(connect(address, log_to_driver=True), err=True)
        gpus = default_gpus(device) if gpus is None else gpus
        workers = Workers(count, gpus, cpus, max_failures).validate()
        if not is_private():  # a cluster: every node has its own disk; a worker must fit one node
            check_shared_storage(run.local, shared_storage, "--shared-storage")
            check_data_on_every_node(config.data)
            place(count, {"CPU": cpus, "GPU": gpus}, flags)
        click.echo(f"training {config.preset} on {config.data} ({len(images)} images), blocks "
                   f"{list(config.model.blocks)}, {config.train.steps} steps, global batch {config.train.batch} on "
                   f"{count} Ray workers ({cpus:g} CPU, {gpus:g} GPU each) -> {run.uri}", err=True)
        try:
            ckpt = train_on_ray(config, run, workers, fault, tracking=tracking)
        except RuntimeError as e:
            click.echo(f"rpgan: {e}", err=True)
            sys.exit(1)
    click.echo(f"checkpoint: {ckpt}\nmetrics: {run.uri}/{METRICS_FILE}\ntensorboard: {run.uri}/{TENSORBOARD}")


def _run_training(config: RunConfig, out: Path, device: str, resume: bool,
                  start: TrainingState | None = None, tracking: Tracking | None = None) -> None:
    from rpgan.io.data import training_images
    from rpgan.io.run import METRICS_FILE, TENSORBOARD, Run
    from rpgan.io.run_lock import run_lock
    from rpgan.training.train import SAMPLES_GRID, layer_grid_name
    from rpgan.training.train import train as run_training

    images = training_images(config)
    config = dataclasses.replace(config, dataset_size=len(images))
    subset = f" labels {config.labels}" if config.labels else ""
    # the folder is made here: an unwritable --out fails in one line (see main)
    with run_lock(Run.at(out), "rpgan train", "--out"):
        click.echo(f"training {config.preset} on {config.data}{subset} ({len(images)} images), blocks "
                   f"{list(config.model.blocks)}, {config.train.steps} steps on {device} -> {out}", err=True)
        ckpt = run_training(config, images, out, device=device, resume=resume, start=start, tracking=tracking)
    click.echo(f"checkpoint: {ckpt}\nsamples: {out / SAMPLES_GRID}\nlayers: {out / layer_grid_name(config.model)}\n"
               f"metrics: {out / METRICS_FILE}\ntensorboard: {out / TENSORBOARD}")


@click.command(epilog=example("rpgan sample --ckpt runs/digits --n 64 --out samples.png",
                               "rpgan sample --ckpt runs/digits --path 3,0,7,1 --out frozen.png"))
@CKPT
@click.option("--n", type=click.IntRange(1, 4096), default=64, show_default=True, help="Images (random paths).")
@click.option("--path", "path_text", help="One frozen path, e.g. 3,0,17,5,2: render its Figure 3 grid instead.")
@click.option("--per-bucket", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="With --path: blocks shown per unfrozen bucket.")
@SEED
@click.option("--out", type=PNG, default=Path("samples.png"), show_default=True,
              help="The PNG to write; random paths also write OUT.paths.txt, each image's path.")
@DEVICE
@GENERATOR
def sample(ckpt: str, n: int, path_text: str | None, per_bucket: int, seed: int, out: Path, device: str,
           generator_weights: str) -> None:
    """Render random paths as a grid, or one frozen path with each bucket unfrozen in turn."""
    from rpgan.io.atomic import atomic_write
    from rpgan.io.images import render, save_frozen_path_grid, save_grid
    from rpgan.model.paths import parse_path
    from rpgan.training.checkpoint import load_generator

    import torch

    generator, _, _ = load_generator(ckpt, pick_device(device), generator_weights)
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


@click.command(epilog=example("rpgan info --ckpt runs/digits"))
@CKPT
def info(ckpt: str) -> None:
    """Configuration, step, parameter counts, latent-space cardinality and coverage (Table 1)."""
    from rpgan.io.run import checkpoint_location
    from rpgan.model.networks import build_discriminator
    from rpgan.model.paths import cardinality
    from rpgan.training.checkpoint import load_generator, read_step

    ckpt = checkpoint_location(ckpt)  # the exact checkpoint, as a path or URI
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
               f"lr {config.train.lr}, diversity weight {config.train.diversity_weight}, seed {config.train.seed}"
               + (f", moving average of G (half-life {config.train.ema_kimg:g} kimg)" if config.train.ema_kimg else ""))
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


@click.command(epilog=example("rpgan extend --ckpt runs/digits-0-6 --add-blocks 5,5,5,5 --labels 7-9 --out runs/more"))
@CKPT
@click.option("--add-blocks", required=True, help="New blocks per bucket, e.g. 5,5,0,0.")
@click.option("--data", type=TEXT, help="Data set of the new training [default: the checkpoint's].")
@click.option("--labels", default="", help="Train on these labels only: 0-9, or 7,8,9 [default: all].")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True, help="Generator steps to train.")
@SEED
@click.option("--out", type=PATH, required=True, help="Run directory for the result.")
@DEVICE
def extend(ckpt: str, add_blocks: str, data: str | None, labels: str, steps: int, seed: int, out: Path,
           device: str) -> None:
    """Incremental learning (section 4.3): add blocks, then train only the new blocks."""
    from rpgan.training.train import start_extension

    try:
        add = [int(v) for v in add_blocks.split(",")]
    except ValueError:
        raise UserError(f"--add-blocks takes one count per bucket like 5,5,0,0, got {add_blocks!r}") from None
    device = pick_device(device)
    config, start = start_extension(ckpt, add, steps, seed, device, data=data, labels=labels)
    _run_training(config, out, device, resume=False, start=start)


@click.command(epilog=example("rpgan compress --ckpt runs/fc --merge 3-5 --merged-blocks 128 --out runs/fc-small"))
@CKPT
@click.option("--merge", required=True, help="Consecutive buckets to merge, 1-based as in the paper: 3-5.")
@click.option("--merged-blocks", "k", type=click.IntRange(1), required=True,
              help="Blocks of the merged bucket (random products).")
@SEED
@click.option("--out", type=PATH, required=True, help="Run directory for the result.")
def compress(ckpt: str, merge: str, k: int, seed: int, out: Path) -> None:
    """Merge consecutive linear buckets of a fully-connected generator into one (section 4.4)."""
    import json

    from rpgan.io.run import Run, checkpoint_location
    from rpgan.model.compress import merge_buckets, parse_merge
    from rpgan.training.checkpoint import derived_training_state, load_generator, save_checkpoint

    import torch

    run = Run.at(out)
    if run.checkpoint_steps():
        raise UserError(f"{out} already holds a run; choose another --out")
    ckpt = checkpoint_location(ckpt)
    generator, config, source = load_generator(ckpt)
    first, last = parse_merge(merge)
    compressed, tuples = merge_buckets(generator, first, last, k, torch.Generator().manual_seed(seed))
    state = derived_training_state(source, compressed, "cpu")
    merged = {"source": ckpt, "merged_buckets": [first + 1, last + 1], "seed": seed,
              "tuples": tuples.tolist()}
    new_config = dataclasses.replace(config, model=compressed.cfg)
    saved = save_checkpoint(run, new_config, state, extra={"merge.json": json.dumps(merged)})
    click.echo(f"buckets {first + 1}-{last + 1} -> one bucket of {k} blocks; blocks now "
               f"{list(compressed.blocks)}\ncheckpoint: {saved}")


@click.command(epilog=example("rpgan curves --run runs/digits", "rpgan curves --run s3://bucket/runs/cifar10",
                              "rpgan curves --run runs/rpgan --run runs/standard --out both.png"))
@click.option("--run", "runs", type=TEXT, required=True, multiple=True,
              help="A run (or one of its checkpoints): a directory or a URI. Give it again to draw several runs.")
@click.option("--out", type=PNG, help="PNG to write [default: RUN/curves.png; needed for several runs].")
def curves(runs: tuple[str, ...], out: Path | None) -> None:
    """Draw training curves (FID during training where measured, the D and G losses) from the
    runs' metrics.parquet: one run, or several on one plot, a line each."""
    import io

    from rpgan.io.atomic import atomic_write
    from rpgan.io.run import Folder
    from rpgan.training.curves import plot_curves
    from rpgan.training.run_log import METRICS_FILE

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(runs) > 1 and out is None:
        raise UserError("several --run draw one plot: give --out PNG")
    frames = []
    folders = [Folder.at(run) for run in runs]
    names = [f.name for f in folders]
    if len(set(names)) < len(names):  # runs/a/digits and runs/b/digits: lines named by their whole path
        names = [f.uri for f in folders]
    for folder, name in zip(folders, names):
        saved = folder.read_bytes(METRICS_FILE)
        if saved is None:
            raise UserError(f"{folder.uri} has no {METRICS_FILE}; give a run directory written by rpgan train "
                            "(or one of its checkpoints)")
        try:
            rows = pq.read_table(io.BytesIO(saved)).to_pandas()
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{folder.uri}/{METRICS_FILE} is unreadable ({type(e).__name__}); train or resume the "
                            "run to write it again") from None
        if rows.empty or "step" not in rows:
            raise UserError(f"{folder.uri}/{METRICS_FILE} has no rows yet; train the run further first")
        frames.append(rows.assign(run=name))
    rows = pd.concat(frames, ignore_index=True)
    evaluated = rows["fid"].notna().sum() if "fid" in rows else 0
    if len(runs) == 1:
        title = f"{folder.name}: {len(rows)} rows to step {rows['step'].max()}, FID at {evaluated} steps"
        png = plot_curves(rows, title, run="run")
    else:
        each = rows.groupby("run", sort=False).agg(last_step=("step", "max"), fids=("fid", "count"))
        title = ", ".join(f"{name} (to step {r['last_step']}, FID at {r['fids']} steps)" for name, r in each.iterrows())
        png = plot_curves(rows, title, by="run", run="run")
    if out is None:
        folder.write_bytes("curves.png", png)
        where = f"{folder.uri}/curves.png"
    else:
        where = str(atomic_write(out, lambda tmp: tmp.write_bytes(png)))
    if not evaluated:
        click.echo("no FID during training in these rows (train with --eval-every N to add it)", err=True)
    click.echo(where)
