"""Training-step time in fp32 and in bf16 autocast, side by side in one process, on a preset's
real data (the same starting weights and draws for both):

    python bench/precision.py [--preset digits] [--steps 10] [--rounds 3] [--device cpu]

Prints ms per step (median over rounds, the candidates alternating) and bf16 / fp32.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.presets import get_preset
from rpgan.training.checkpoint import new_training_state
from rpgan.training.train import configure_device, train_step

CANDIDATES = ("fp32", "bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--data", help="[default: the preset's; the digits data set for a preset without one]")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    preset = get_preset(args.preset)
    config = RunConfig(model=preset.model, train=preset.train, data=args.data or preset.data or "digits")
    data = load_data(config.data, config.model.image_size, config.model.channels)
    start = new_training_state(config, args.device)
    states = {p: copy.deepcopy(start) for p in CANDIDATES}
    cfgs = {p: dataclasses.replace(config.train, precision=p) for p in CANDIDATES}
    configure_device(config.train, args.device)
    times: dict[str, list[float]] = {p: [] for p in CANDIDATES}
    for p in CANDIDATES:  # warm-up, untimed
        train_step(states[p], data, cfgs[p], args.device)
    for _ in range(args.rounds):
        for p in CANDIDATES:
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                train_step(states[p], data, cfgs[p], args.device)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times[p].append((time.perf_counter() - t0) / args.steps * 1000)
    ms = {p: statistics.median(t) for p, t in times.items()}
    m = config.model
    print(f"{args.preset}: {m.arch}, blocks {list(m.blocks)}, width {m.width}, batch {config.train.batch}, "
          f"d_steps {config.train.d_steps} on {args.device} ({torch.get_num_threads()} threads)")
    for p in CANDIDATES:
        print(f"{p:5s} {ms[p]:9.1f} ms/step  (rounds: {', '.join(f'{t:.0f}' for t in times[p])})")
    print(f"bf16 / fp32: {ms['bf16'] / ms['fp32']:.2f}")


if __name__ == "__main__":
    main()
