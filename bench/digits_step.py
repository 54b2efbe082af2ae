"""Training-step time of candidate sizes for the `digits` preset (the embedded default),
side by side in one process on the real digits data:

    python bench/digits_step.py [--steps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.presets import get_preset
from rpgan.training.checkpoint import new_training_state
from rpgan.training.train import train_step

# (generator width, discriminator width, batch)
CANDIDATES = [(64, 64, 64), (64, 64, 32), (64, 32, 48), (64, 32, 32)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    preset = get_preset("digits")
    data = load_data("digits", preset.model.image_size, preset.model.channels)
    print(f"{'G width':>8s} {'D width':>8s} {'batch':>6s} {'ms/step':>8s} {'1,500 steps':>12s}")
    for width, d_width, batch in CANDIDATES:
        config = RunConfig(model=dataclasses.replace(preset.model, width=width, d_width=d_width),
                           train=dataclasses.replace(preset.train, batch=batch))
        state = new_training_state(config, "cpu")
        train_step(state, data, config.train, "cpu")  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(state, data, config.train, "cpu")
        ms = (time.perf_counter() - t0) / args.steps * 1000
        print(f"{width:8d} {d_width:8d} {batch:6d} {ms:8.0f} {ms * 1.5 / 60:9.1f} min")


if __name__ == "__main__":
    main()
