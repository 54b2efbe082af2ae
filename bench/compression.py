"""Generation throughput of the purely linear fully-connected generator (paper Table 3:
128 -> 128 -> 256 -> 512 -> 1024 -> 784, blocks 32/32/32/16/16) vs its compression
(buckets 3-5 merged into one bucket of --blocks product blocks), side by side in one process:

    python bench/compression.py [--repeats 20] [--blocks 128] [--device cpu|cuda]

Candidates, interleaved, median of --repeats (images/s, eval mode, no gradients):
- router "group" (rpgan's) with its per-block GEMM "W x^T" (the weight as BLAS's first operand),
- the same router with "x W^T" (F.linear),
- router "loop": one call per image, the public code's scheme.
Weights are random (the preset has no BatchNorm): speed does not depend on training.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time
from unittest import mock

from rpgan.model import routing
from rpgan.model.compress import merge_buckets
from rpgan.model.networks import Generator
from rpgan.presets import get_preset

import torch
import torch.nn.functional as F

CANDIDATES = (("group", "W x^T"), ("group", "x W^T"), ("loop", "W x^T"))


def kernel(name: str):
    """A context in which routed linear blocks use the named GEMM form (rpgan's: W x^T)."""
    if name == "W x^T":
        return contextlib.nullcontext()
    return mock.patch.object(routing, "_linear_weight_first", F.linear)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=128, help="blocks of the merged bucket (the paper: 128)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    full = Generator(get_preset("mnist-fc").model).eval()
    small, _ = merge_buckets(full, 2, 4, args.blocks, torch.Generator().manual_seed(0))
    generators = {"original": full.to(args.device), "compressed": small.to(args.device)}
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"merged bucket of {args.blocks} blocks, median of {args.repeats}; images/s")
    print(f"{'batch':>6s} {'router':>7s} {'GEMM':>6s} {'original':>10s} {'compressed':>11s} {'speed-up':>9s}")
    for batch in (64, 1024, 8192):
        rng = torch.Generator().manual_seed(1)
        paths = {name: G.sample_latent(batch, rng)[0] for name, G in generators.items()}
        # 8192 images: only the fast router, to keep the run short
        candidates = CANDIDATES if batch <= 1024 else CANDIDATES[:1]
        times = {(c, name): [] for c in candidates for name in generators}
        with torch.no_grad():
            for repeat in range(args.repeats + 1):  # the first round warms up
                for router, gemm in candidates:
                    with kernel(gemm):
                        for name, G in generators.items():
                            G.cfg = dataclasses.replace(G.cfg, routing=router)
                            t0 = time.perf_counter()
                            G(paths[name])
                            if args.device == "cuda":
                                torch.cuda.synchronize()
                            if repeat:
                                times[(router, gemm), name].append(time.perf_counter() - t0)
        for c in candidates:
            rate = {name: batch / statistics.median(times[c, name]) for name in generators}
            print(f"{batch:6d} {c[0]:>7s} {c[1]:>6s} {rate['original']:10.0f} {rate['compressed']:11.0f} "
                  f"{rate['compressed'] / rate['original']:8.2f}x")


if __name__ == "__main__":
    main()
