"""Ray Train throughput and overhead on the `digits` preset, side by side in one process:

    python bench/ray_train.py [--steps 80] [--batch 32] [--rounds 2] [--device cpu]

Candidates, all on the same global batch and steps:
  in-process   `rpgan train` without Ray (torch uses every core)
  1 worker     one Ray Train worker holding every core     -> Ray's overhead on the same work
  2 workers    two Ray Train workers, a core each, batch split in half, gradients averaged (gloo)
Images/s is the steady state: the metrics rows after the first one (start-up, first-step
warm-up and checkpoints are excluded; the row times cover training steps only). Wall time
includes start-up (Ray workers, process group, data loading). The candidates run in turn,
`--rounds` times, and each keeps its best round (Ray's own processes are busy for a while
after it starts, which would otherwise favour whoever runs last).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from rpgan.config import RunConfig
from rpgan.distributed.ray_session import Workers, connect
from rpgan.distributed.ray_train import train_on_ray
from rpgan.io.data import training_images
from rpgan.io.run import Run
from rpgan.presets import get_preset
from rpgan.training.train import train

import pandas as pd


def steady(run: Path, batch: int) -> tuple[float, float]:
    """(images/s, ms per step) over the steps of every metrics row but the first."""
    rows = pd.read_parquet(run / "metrics.parquet")
    steps = rows.step.diff().iloc[1:]
    seconds = (rows.step_time_s.iloc[1:] * steps).sum() / steps.sum()
    return batch / seconds, seconds * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--data", help="[default: the preset's; e.g. digits, so that nothing is downloaded]")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.steps < 20:
        ap.error("--steps must be at least 20: images/s is measured over the metrics rows after the first")
    cores = os.cpu_count() or 1
    p = get_preset(args.preset)
    config = RunConfig(model=p.model, data=args.data or p.data, preset=args.preset,
                       train=dataclasses.replace(p.train, steps=args.steps, batch=args.batch, log_every=10,
                                                 sample_every=0, checkpoint_every=0))
    gpu = 1.0 if args.device == "cuda" else 0.0
    candidates = [("in-process", None), ("1 worker", Workers(1, gpu, cores)),
                  ("2 workers", Workers(2, gpu / 2, max(1, cores // 2)))]
    print(connect(num_cpus=cores))
    print(f"{args.preset}: {args.steps} steps, global batch {args.batch}, {args.device}, {cores} cores")
    results: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for label, workers in candidates:
                run = Path(tmp) / f"{label.replace(' ', '-')}-{round_}"
                t0 = time.perf_counter()
                if workers is None:
                    train(config, training_images(config), run, device=args.device, quiet=True)
                else:
                    train_on_ray(config, Run(tmp, run.name), workers)
                measured = (*steady(run, args.batch), time.perf_counter() - t0)
                print(f"  round {round_ + 1} {label}: {measured[0]:.1f} images/s", flush=True)
                if label not in results or measured[0] > results[label][0]:
                    results[label] = measured
    base_ips, base_ms, _ = results["in-process"]
    print(f"{'candidate':12s} {'images/s':>9s} {'ms/step':>8s} {'wall s':>7s} {'vs in-process':>14s}")
    for label, (ips, ms, wall) in results.items():
        print(f"{label:12s} {ips:9.1f} {ms:8.1f} {wall:7.1f} {ips / base_ips:13.2f}x")
    one = results["1 worker"]
    print(f"Ray overhead, 1 worker vs in-process, per step after start-up: {(one[1] / base_ms - 1) * 100:+.1f}%")
    print(f"2 workers vs 1 worker throughput: {results['2 workers'][0] / one[0]:.2f}x")


if __name__ == "__main__":
    main()
