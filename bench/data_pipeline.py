"""Training time on `folder:` data (PNG files decoded by worker processes ahead of each step)
against the same images held in memory, side by side in one process:

    python bench/data_pipeline.py [--preset anime] [--images 2000] [--steps 5] [--rounds 3]

The bench writes --images random PNGs of 96x80 pixels (so every one is cropped and resized, as
Anime Faces or LSUN are) to a temporary folder and runs `fit`, the loop `rpgan train` runs, for
--steps steps from the same weights with each source: folder data with the preset's
data_workers, folder data decoded in the step (data_workers 0), and the decoded images in
memory. Prints the steady-state s per step (the median step after a run's first, whose worker
start-up a real run pays once; then the median over rounds, the candidates alternating) and
each ratio to memory.
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
from rpgan.training.loop import fit

import numpy as np
import torch
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="anime")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    preset = get_preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(Path(tmp) / f"{i:05d}.png")
        config = RunConfig(model=preset.model, train=preset.train, data=f"folder:{tmp}", preset=args.preset)
        folder = load_data(config.data, config.model.image_size, config.model.channels)
        memory = ImageData(torch.stack([folder.load(i) for i in range(len(folder))]))
        workers = config.train.data_workers
        candidates = {f"folder, {workers} workers": (folder, workers), "folder, decoded in the step": (folder, 0),
                      "memory": (memory, 0)}
        start = new_training_state(config, args.device)
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for rnd in range(args.rounds + 1):  # round 0 warms up, untimed
            for name, (data, n_workers) in candidates.items():
                steps = args.steps if rnd else 3
                run = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps,
                                                                           data_workers=n_workers))
                state = copy.deepcopy(start)
                ticks = [time.perf_counter()]

                def tick(step: int, ticks: list[float] = ticks) -> None:
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    ticks.append(time.perf_counter())

                fit(run, data, state, args.device, save=lambda s: None, after_step=tick, quiet=True)
                if rnd:  # the steady state: steps after the first (worker start-up, copy-on-write after fork)
                    times[name].append(statistics.median(np.diff(ticks[2:])))
    m = config.model
    print(f"{args.preset}: {m.image_size}x{m.image_size}, blocks {list(m.blocks)}, width {m.width}, batch "
          f"{config.train.batch}, d_steps {config.train.d_steps}, {args.images} PNGs of 96x80, on {args.device} "
          f"({torch.get_num_threads()} threads)")
    base = statistics.median(times["memory"])
    for name, t in times.items():
        s = statistics.median(t)
        print(f"{name:30s} {s:7.3f} s/step  x{s / base:.3f} of memory  (rounds: {', '.join(f'{x:.3f}' for x in t)})")


if __name__ == "__main__":
    main()
