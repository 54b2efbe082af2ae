"""Analysis throughput (D_{l->1} evaluations/s): in-process vs 1 and 2 Ray workers, side by side
in one process, on the same checkpoint and draws. Ray start-up is excluded; actor start-up
(loading the generator and Inception) is included, as a user pays it.

    python bench/responsibility.py --ckpt runs/demo [--evaluations 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from analysis.analyze import evaluate
from analysis.fanout import Fanout
from analysis.responsibility import draw
from rpgan.distributed.ray_session import connect, default_gpus
from rpgan.metrics.inception import resolve_weights
from rpgan.training.checkpoint import load_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=Path("runs/demo"),
                    help="default: rpgan train --preset digits --out runs/demo --seed 0")
    ap.add_argument("--evaluations", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    generator, _, ckpt = load_generator(args.ckpt)
    draws = draw(generator, args.evaluations, seed=0)
    calls = [(evaluate, (draws.chunk(a, a + args.chunk), a, "buckets", 0.0))
             for a in range(0, args.evaluations, args.chunk)]
    print(connect(), f"| Inception weights: {resolve_weights()[1]}")
    gpus = default_gpus(args.device)
    images = args.evaluations * len(generator.blocks) * 4
    rates = {}
    for name, workers in (("in-process", 0), ("1 Ray worker", 1), ("2 Ray workers", 2)):
        fan = Fanout(workers=workers, gpus_per_worker=gpus if workers else 0.0, device=args.device)
        _ = fan.inception_state  # resolved before timing: the candidates differ in placement only
        t0 = time.perf_counter()
        fan.run(calls, ckpt)
        seconds = time.perf_counter() - t0
        rates[name] = args.evaluations / seconds
        print(f"{name:14s} {seconds:7.1f} s  {rates[name]:6.3f} evaluations/s  {images / seconds:6.1f} images/s")
    base = rates["in-process"]
    print("ratios vs in-process: " + ", ".join(f"{k} {v / base:.2f}x" for k, v in rates.items()))


if __name__ == "__main__":
    main()
