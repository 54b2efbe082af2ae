"""Generation throughput of the purely linear fully-connected generator (paper Table 3:
128 -> 128 -> 256 -> 512 -> 1024 -> 784, blocks 32/32/32/16/16) vs its compression
(buckets 3-5 merged into one bucket of 128 product blocks), side by side in one process:

    python bench/compression.py [--repeats 20] [--device cpu|cuda]

Weights are random with non-trivial BatchNorm statistics: speed does not depend on training.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from rpgan.compress import merge_buckets
from rpgan.model import Generator
from rpgan.presets import get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    full = Generator(get_preset("mnist-fc").model)
    with torch.no_grad():
        full(full.sample_latent(256, torch.Generator().manual_seed(0))[0])  # BN statistics
    small, _ = merge_buckets(full.eval(), 2, 4, 128, torch.Generator().manual_seed(0))
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.repeats}; images/s")
    print(f"{'batch':>6s} {'routing':>8s} {'original':>10s} {'compressed':>11s} {'speed-up':>9s}")
    for batch in (64, 1024, 8192):
        rng = torch.Generator().manual_seed(1)
        paths_full = full.sample_latent(batch, rng)[0]
        paths_small = small.sample_latent(batch, rng)[0]
        # gather materialises a weight matrix per sample: 6.6 GB at batch 8192, so not there
        for routing in ("group", "gather") if batch <= 1024 else ("group",):
            models = {}
            for name, G, paths in (("original", full, paths_full), ("compressed", small, paths_small)):
                G = G.to(args.device).eval()
                G.cfg = dataclasses.replace(G.cfg, routing=routing)
                models[name] = (G, paths)
            times = {name: [] for name in models}
            with torch.no_grad():
                for G, paths in models.values():
                    G(paths)  # warm-up
                for _ in range(args.repeats):
                    for name, (G, paths) in models.items():
                        t0 = time.perf_counter()
                        G(paths)
                        if args.device == "cuda":
                            torch.cuda.synchronize()
                        times[name].append(time.perf_counter() - t0)
            rate = {name: batch / statistics.median(t) for name, t in times.items()}
            print(f"{batch:6d} {routing:>8s} {rate['original']:10.0f} {rate['compressed']:11.0f} "
                  f"{rate['compressed'] / rate['original']:8.2f}x")


if __name__ == "__main__":
    main()
