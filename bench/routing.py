"""Routing benchmark: one full generator training step (forward + backward through G and D)
for RPGAN with 40 blocks per bucket vs the same architecture with one block per bucket,
and vs the per-sample loop router. Batch 64, the CIFAR-10 architecture (5 buckets, 32x32).

Run side by side in one process, interleaved, median of --repeats timings:
    python bench/routing.py [--width 128] [--device cpu|cuda] [--repeats 5]
On CPU the channel width is reduced (default 128 instead of the paper's 256) to keep the run short.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from rpgan.model.networks import Generator, build_discriminator
from rpgan.presets import get_preset

import torch


def step_fn(G: Generator, D: torch.nn.Module, batch: int, device: str):
    rng = torch.Generator().manual_seed(0)
    paths, z = G.sample_latent(batch, rng)

    def step() -> None:
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        D(G(paths, z)).mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def peak_memory(step, device: str) -> float:
    """Peak memory of one step in MiB (CUDA allocator; on CPU the step's RSS growth is not
    reliable, so the size of saved activations is measured instead)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated() / 2**20
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        step()
    return sum(saved) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-loop", action="store_true", help="skip the slow per-sample loop router")
    args = ap.parse_args()
    base = dataclasses.replace(get_preset("cifar10").model, width=args.width)
    candidates = {
        "standard (1 block/bucket)": dataclasses.replace(base, blocks=(1,) * 5),
        "rpgan group": dataclasses.replace(base, blocks=(args.blocks,) * 5, routing="group"),
        "rpgan gather": dataclasses.replace(base, blocks=(args.blocks,) * 5, routing="gather"),
    }
    if not args.no_loop:
        candidates["rpgan per-sample loop"] = dataclasses.replace(base, blocks=(args.blocks,) * 5, routing="loop")
    torch.manual_seed(0)
    D = build_discriminator(base).to(args.device)
    steps = {name: step_fn(Generator(cfg).to(args.device).train(), D, args.batch, args.device)
             for name, cfg in candidates.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(args.repeats):
        for name, step in steps.items():  # interleaved, so drift hits every candidate alike
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    std = med["standard (1 block/bucket)"]
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"CIFAR-10 architecture at width {args.width}, {args.blocks} blocks/bucket, median of {args.repeats}")
    print(f"{'candidate':28s} {'step ms':>9s} {'/standard':>10s} {'memory MiB':>11s}")
    for name, t in med.items():
        mem = peak_memory(steps[name], args.device)
        print(f"{name:28s} {t * 1000:9.1f} {t / std:10.2f} {mem:11.1f}")
    if "rpgan per-sample loop" in med:
        print(f"per-sample loop / group: {med['rpgan per-sample loop'] / med['rpgan group']:.2f}x")


if __name__ == "__main__":
    main()
