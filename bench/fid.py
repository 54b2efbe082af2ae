"""FID pipeline time and value: `rpgan`'s (Ray fan-out, eigenvalue Fréchet distance) vs
pytorch-fid's own pipeline (`calculate_fid_given_paths`, the `pytorch-fid` command line) on the
same two folders of PNGs, side by side in one process; then the Fréchet distance alone vs
scipy's sqrtm (pytorch-fid's `calculate_frechet_distance`) on 2048-d statistics, and from the
features of fewer points than dimensions (`frechet_distance_of`) vs from their statistics.

    python bench/fid.py --ckpt runs/demo [--n 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from analysis.fanout import Fanout
from analysis.fid import reference_features
from rpgan.distributed.ray_session import connect
from rpgan.io.data import load_data, to_uint8
from rpgan.io.images import render
from rpgan.metrics.frechet import frechet_distance, frechet_distance_of, statistics
from rpgan.metrics.inception import hub_cache_file, resolve_weights
from rpgan.training.checkpoint import load_generator

import numpy as np
import torch
from PIL import Image


def _write_pngs(images: torch.Tensor, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=Path("runs/demo"),
                    help="default: rpgan train --preset digits --out runs/demo --seed 0")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    generator, config, _ = load_generator(args.ckpt)
    size = config.model.image_size
    tmp = Path(tempfile.mkdtemp(prefix="rpgan-bench-fid-"))
    paths, z = generator.sample_latent(args.n, torch.Generator().manual_seed(0))
    _write_pngs(to_uint8(render(generator, paths, z)), tmp / "generated")
    real = load_data(config.data, size, config.model.channels)
    _write_pngs(real.batch(torch.arange(min(args.n, len(real)))), tmp / "real")

    # pytorch-fid reads its weights from the torch hub cache: give it the same weights offline
    state, source = resolve_weights()
    os.environ["TORCH_HOME"] = str(tmp / "torch")
    hub_cache_file().parent.mkdir(parents=True)
    torch.save({**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, hub_cache_file())
    print(connect(), f"| Inception weights: {source}")

    from pytorch_fid.fid_score import calculate_fid_given_paths, calculate_frechet_distance

    t0 = time.perf_counter()
    theirs = calculate_fid_given_paths([str(tmp / "generated"), str(tmp / "real")], batch_size=50, device="cpu",
                                       dims=2048, num_workers=0)
    t_theirs = time.perf_counter() - t0

    print(f"{args.n} vs {args.n} images of {size}x{size}")
    print(f"pytorch-fid             {t_theirs:7.1f} s  FID {theirs:.6f}")
    for workers in (0, args.workers):
        t0 = time.perf_counter()
        fan = Fanout(workers=workers, chunk=50)
        gen, _ = reference_features(f"folder:{tmp / 'generated'}", size, 3, None, fan, out=tmp / f"gen{workers}.npz")
        ref, _ = reference_features(f"folder:{tmp / 'real'}", size, 3, None, fan, out=tmp / f"ref{workers}.npz")
        ours = frechet_distance(*statistics(gen.features), *statistics(ref.features))
        t_ours = time.perf_counter() - t0
        print(f"rpgan, {workers} Ray workers   {t_ours:7.1f} s  FID {ours:.6f}  time / pytorch-fid "
              f"{t_ours / t_theirs:.2f}, |FID difference| {abs(ours - theirs):.2e}")

    mu1, s1 = statistics(np.random.default_rng(0).normal(size=(5000, 2048)))
    mu2, s2 = statistics(np.resize(gen.features.astype(np.float64), (5000, 2048))
                         + np.random.default_rng(1).normal(scale=0.01, size=(5000, 2048)))
    timings = {}
    candidates = (("eigenvalue (rpgan)", frechet_distance), ("scipy sqrtm (pytorch-fid)", calculate_frechet_distance))
    for name, fn in candidates:
        t0 = time.perf_counter()
        value = fn(mu1, s1, mu2, s2)
        timings[name] = time.perf_counter() - t0
        print(f"Fréchet distance, {name:26s} {timings[name]:6.2f} s  value {value:.9f}")
    print(f"sqrtm / eigenvalue time: {timings['scipy sqrtm (pytorch-fid)'] / timings['eigenvalue (rpgan)']:.2f}x")

    # what a sweep trial or a training's evaluation has: N < 2048 points a side
    t0 = time.perf_counter()
    of_stats = frechet_distance(*statistics(gen.features), *statistics(ref.features))
    t_stats = time.perf_counter() - t0
    t0 = time.perf_counter()
    of_features = frechet_distance_of(gen.features, ref.features)
    t_features = time.perf_counter() - t0
    print(f"{args.n} vs {args.n} features: from statistics {t_stats:.3f} s FID {of_stats:.9f}; from features "
          f"{t_features:.3f} s FID {of_features:.9f}; time ratio {t_stats / t_features:.0f}x, relative difference "
          f"{abs(of_features - of_stats) / of_stats:.1e}")


if __name__ == "__main__":
    main()
