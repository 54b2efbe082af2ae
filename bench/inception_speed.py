"""Inception feature throughput (pool3, what FID, PRD and the semantic responsibility embed):
images/s of `rpgan.metrics.inception.features` at several batch sizes and thread counts, the
network in the default layout (contiguous, NCHW), channels-last (rpgan's), and channels-last
with every BatchNorm folded into its convolution (a candidate not adopted), in one process.

    python bench/inception_speed.py [--device cuda] [--images 2000] [--size 32] [--threads 1,2]

The weights are the FID Inception's when they are found offline, else random ones of the same
architecture: the speed does not depend on the values. Prints images/s per batch size and, on
CUDA, the peak memory.
"""

from __future__ import annotations

import argparse
import time

from rpgan.errors import UserError
from rpgan.metrics.fid_inception import FIDInception
from rpgan.metrics.inception import InceptionFeatures, features, resolve_weights

import torch
from torch.fx.experimental.optimization import fuse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=32, help="side of the generated-size images (resized to 299)")
    ap.add_argument("--batches", default="50,100,200")
    ap.add_argument("--threads", default="", help="CPU thread counts to try, e.g. 1,2 [default: torch's]")
    args = ap.parse_args()
    try:
        state, source = resolve_weights()
    except UserError:
        state, source = FIDInception().state_dict(), "random weights (no FID weights offline)"
    nets = {"contiguous": InceptionFeatures(state, torch.contiguous_format).to(args.device),
            "channels_last": InceptionFeatures(state).to(args.device)}
    # A candidate not adopted: every BatchNorm folded into its convolution (torch.fx), channels-last
    folded = InceptionFeatures(state).to(args.device)
    folded.layers = fuse(folded.layers)
    nets["bn_folded"] = folded
    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8)
    print(f"Inception pool3 on {args.device}, {args.images} images of {args.size}x{args.size}, weights: {source}")
    first = {name: features(net, images[:50], batch=50) for name, net in nets.items()}  # warm-up, and the difference
    apart = (first["channels_last"] - first["contiguous"]).abs().max() / first["contiguous"].abs().max()
    print(f"features: channels_last vs contiguous, max |difference| / max |feature| = {apart.item():.1e}")
    folded_apart = (first["bn_folded"] - first["channels_last"]).abs().max() / first["channels_last"].abs().max()
    print(f"features: bn_folded vs channels_last, max |difference| / max |feature| = {folded_apart.item():.1e}")
    for threads in [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for batch in (int(b) for b in args.batches.split(",")):
            rates = {}
            for name, net in nets.items():
                if args.device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                features(net, images, batch=batch)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                rates[name] = args.images / (time.perf_counter() - t0)
                peak = f", peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB" if args.device == "cuda" else ""
                print(f"threads {threads} batch {batch:4d} {name:14s} {rates[name]:8.1f} images/s{peak}")
            print(f"threads {threads} batch {batch:4d} channels_last / contiguous: "
                  f"{rates['channels_last'] / rates['contiguous']:.2f}x, bn_folded / channels_last: "
                  f"{rates['bn_folded'] / rates['channels_last']:.2f}x")

if __name__ == "__main__":
    main()
