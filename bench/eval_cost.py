"""The cost of FID during training (--eval-every / --eval-samples) as a share of training time,
the two candidates side by side in one process on the same seed:

    python bench/eval_cost.py --preset digits --eval-every 500 --eval-samples 250
    python bench/eval_cost.py --preset cifar10-cpu --data npz:PATH --steps 100 --eval-every 100
    python bench/eval_cost.py --device cuda --preset cifar10 --data digits --steps 500 --eval-every 500

"off" trains the preset's steps (or --steps) without evaluation, "on" with an evaluation every
--eval-every steps (default: the preset's own schedule, or 4 evaluations when
the preset has none). The reference features are computed once before both (a cached one-off
per data set) and timed separately. Besides the measured share, it prints the share at the
preset's full schedule from the measured step time and evaluation time, for presets too long
to train twice here.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.presets import get_preset
from rpgan.training.evaluation import Evaluation
from rpgan.training.train import train

import pyarrow.parquet as pq


def run(config: RunConfig, data, folder: Path, device: str) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    train(config, data, folder, device=device, quiet=True)
    return time.perf_counter() - start, pq.read_table(folder / "metrics.parquet").to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--data", help="[default: the preset's]")
    ap.add_argument("--steps", type=int, help="[default: the preset's]")
    ap.add_argument("--eval-every", type=int, help="[default: the preset's, or a quarter of --steps]")
    ap.add_argument("--eval-samples", type=int, help="[default: the preset's]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    preset = get_preset(args.preset)
    steps = args.steps or preset.train.steps
    every = args.eval_every or (preset.train.eval_every if not args.steps else 0) or max(1, steps // 4)
    samples = args.eval_samples or preset.train.eval_samples
    base = dataclasses.replace(preset.train, steps=steps, seed=args.seed, sample_every=0, checkpoint_every=0)
    config = RunConfig(model=preset.model, train=dataclasses.replace(base, eval_every=0),
                       data=args.data or preset.data, preset=args.preset)
    on = dataclasses.replace(config, train=dataclasses.replace(base, eval_every=every, eval_samples=samples))
    data = load_data(config.data, config.model.image_size, config.model.channels)
    t0 = time.perf_counter()
    _ = Evaluation(on, data, args.device).reference  # cached for both runs: a one-off per data set
    reference_s = time.perf_counter() - t0
    print(f"{args.preset} on {config.data}: {steps} steps, FID of {samples} images every {every} steps; "
          f"reference features of {samples} real images: {reference_s:.1f} s (once per data set, cached)")
    with tempfile.TemporaryDirectory() as tmp:
        off_s, _ = run(config, data, Path(tmp) / "off", args.device)
        on_s, rows = run(on, data, Path(tmp) / "on", args.device)
    evals = [r["eval_time_s"] for r in rows if r["eval_time_s"] is not None]
    eval_s = sum(evals)
    print(f"off  {off_s:8.1f} s")
    print(f"on   {on_s:8.1f} s  ({len(evals)} evaluations, {eval_s:.1f} s, {eval_s / len(evals):.1f} s each)")
    print(f"on / off {on_s / off_s:.3f}; evaluation share of the 'on' run {eval_s / on_s:.1%}")
    full = preset.train
    if full.eval_every:
        step_s = off_s / steps
        n = full.steps // full.eval_every
        per = eval_s / len(evals) * full.eval_samples / samples
        share = n * per / (full.steps * step_s + n * per)
        print(f"at the preset's schedule ({full.steps} steps, {full.eval_samples} images every {full.eval_every}): "
              f"{n} evaluations of ~{per:.0f} s against {full.steps * step_s / 60:.0f} min of steps: {share:.1%}")


if __name__ == "__main__":
    main()
