"""Training-step time of candidate sizes for a CPU-sized preset, side by side in one process on
its real data, to choose the preset's size by measurement:

    python bench/preset_step.py [--preset digits|cifar10-cpu] [--data SPEC] [--steps 10]

Each candidate (generator width, discriminator width, blocks per bucket, batch) is the preset
with those values; prints ms per step (1 D step + 1 G step, diversity loss included, after one
warm-up step) and what the preset's steps would take.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.presets import get_preset
from rpgan.training.checkpoint import new_training_state
from rpgan.training.loop import train_step

# preset -> candidates (generator width, discriminator width, blocks per bucket, batch)
CANDIDATES = {
    "digits": [(64, 64, 10, 64), (64, 64, 10, 32), (64, 32, 10, 48), (64, 32, 10, 32)],
    "cifar10-cpu": [(128, 128, 10, 64), (128, 64, 10, 32), (96, 64, 10, 32), (64, 64, 10, 32), (64, 64, 20, 32)],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits", choices=list(CANDIDATES))
    ap.add_argument("--data", help="[default: the preset's]")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    preset = get_preset(args.preset)
    data = load_data(args.data or preset.data, preset.model.image_size, preset.model.channels)
    steps = preset.train.steps
    print(f"{args.preset}, {preset.train.d_steps} D step(s), {steps:,} steps in the preset")
    print(f"{'G width':>8s} {'D width':>8s} {'blocks':>7s} {'batch':>6s} {'ms/step':>8s} {f'{steps:,} steps':>12s}")
    for width, d_width, blocks, batch in CANDIDATES[args.preset]:
        model = dataclasses.replace(preset.model, width=width, d_width=d_width,
                                    blocks=(blocks,) * preset.model.n_buckets)
        config = RunConfig(model=model, train=dataclasses.replace(preset.train, batch=batch))
        state = new_training_state(config, "cpu")
        train_step(state, data, config.train, "cpu")  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(state, data, config.train, "cpu")
        ms = (time.perf_counter() - t0) / args.steps * 1000
        print(f"{width:8d} {d_width:8d} {blocks:7d} {batch:6d} {ms:8.0f} {ms * steps / 60_000:9.1f} min")


if __name__ == "__main__":
    main()
