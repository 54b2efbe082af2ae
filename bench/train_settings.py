"""Training-step time under each value of one training setting, side by side in one process, on a
preset's real data (the same starting weights and draws for every value):

    python bench/train_settings.py [--setting precision|compile] [--values fp32,bf16] [--preset digits]
                                   [--steps 10] [--rounds 3]

precision compares fp32, bf16 and fp16 autocast; compile compares eager with torch.compile
(whose first step, the compilation, is timed apart). Prints ms per step (median over rounds,
the values alternating) and each one's ratio to the first. With `--quality`, it instead trains
the preset for its steps in fp32 (seeds 0 and 1) and in bf16 (seed 0) and prints each one's FID
against the data set, with the fp32 seed-to-seed gap as the yardstick for the bf16 one:

    python bench/train_settings.py --quality [--fid-samples 2000]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from rpgan.config import RunConfig
from rpgan.io.data import ImageData, load_data
from rpgan.presets import get_preset
from rpgan.training.checkpoint import new_training_state
from rpgan.training.loop import compile_static, configure_device, train_step

import torch

VALUES = {"precision": ("fp32", "bf16", "fp16"), "compile": (False, True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="precision", choices=list(VALUES))
    ap.add_argument("--values", help="comma-separated subset of the setting's values, e.g. fp32,bf16 [default: all]")
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--data", help="[default: the preset's; the digits data set for a preset without one]")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quality", action="store_true", help="FID after the preset's steps instead of step time")
    ap.add_argument("--fid-samples", type=int, default=2000)
    args = ap.parse_args()
    preset = get_preset(args.preset)
    config = RunConfig(model=preset.model, train=preset.train, data=args.data or preset.data or "digits",
                       preset=args.preset)
    data = load_data(config.data, config.model.image_size, config.model.channels)
    if args.quality:
        quality(config, data, args.device, args.fid_samples)
        return
    values = VALUES[args.setting]
    if args.values:
        values = tuple(v for v in values if str(v).lower() in args.values.lower().split(","))
        if not values:
            ap.error(f"--values: none of {args.values!r} is a value of {args.setting} ({VALUES[args.setting]})")
    start = new_training_state(config, args.device)
    states = {v: copy.deepcopy(start) for v in values}
    cfgs = {v: dataclasses.replace(config.train, **{args.setting: v}) for v in values}
    configure_device(config.train, args.device)

    def timed(v, steps: int) -> float:
        if args.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(states[v], data, cfgs[v], args.device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps * 1000

    first = {}
    for v in values:  # warm-up (and compilation), untimed in the medians
        if cfgs[v].compile:
            compile_static(states[v])
        first[v] = timed(v, 1)
    times: dict = {v: [] for v in values}
    for _ in range(args.rounds):
        for v in values:
            times[v].append(timed(v, args.steps))
    ms = {v: statistics.median(t) for v, t in times.items()}
    m = config.model
    print(f"{args.preset}: {m.arch}, blocks {list(m.blocks)}, width {m.width}, batch {config.train.batch}, "
          f"d_steps {config.train.d_steps} on {args.device} ({torch.get_num_threads()} threads)")
    for v in values:
        print(f"{args.setting} {str(v):5s} {ms[v]:9.1f} ms/step  x{ms[v] / ms[values[0]]:.2f}  first step "
              f"{first[v]:,.0f} ms  (rounds: {', '.join(f'{t:.0f}' for t in times[v])})")


def quality(config: RunConfig, data: ImageData, device: str, n: int) -> None:
    from analysis.fanout import Fanout
    from analysis.fid import fid
    from rpgan.training.train import train

    runs = {"fp32 seed 0": ("fp32", 0), "fp32 seed 1": ("fp32", 1), "bf16 seed 0": ("bf16", 0)}
    fan = Fanout(workers=0, device=device)
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (precision, seed) in runs.items():
            run = dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision, seed=seed),
                                      dataset_size=len(data))
            t0 = time.perf_counter()
            ckpt = train(run, data, Path(tmp) / name.replace(" ", "-"), device=device, quiet=True)
            seconds = time.perf_counter() - t0
            scores[name] = fid(ckpt, n, 0, fan, out=Path(tmp) / "fid" / name.replace(" ", "-"), prd=False)["fid"]
            print(f"{name}: {config.train.steps} steps in {seconds:.0f} s, FID {scores[name]:.2f} ({n} generated vs "
                  f"{len(data)} real)", flush=True)
    base = scores["fp32 seed 0"]
    print(f"bf16 / fp32 FID: {scores['bf16 seed 0'] / base:.3f}; "
          f"fp32 seed 1 / seed 0: {scores['fp32 seed 1'] / base:.3f}")


if __name__ == "__main__":
    main()
