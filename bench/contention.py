"""Training beside busy processes: a digits training alone and beside 1 and 2 processes that keep
a core busy, with torch's OpenMP threads waiting the old way (libgomp's default: they spin) and
rpgan's way (OMP_WAIT_POLICY=PASSIVE, set by `import rpgan` before torch loads), side by side:

    python bench/contention.py [--steps 40] [--busy 0,1,2] [--rounds 2]

Each measurement is a fresh process (OpenMP reads its policy when torch loads it): the old one
imports torch before rpgan, so rpgan's setting comes too late for it. Prints seconds for the
steps (median over rounds, candidates alternating) and each one's ratio to its quiet time; a
fair share of the machine's cores predicts (cores + busy) / cores beside `busy` processes once
the busy ones and the training's threads outnumber the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

TRAIN = """
import sys, time
if sys.argv[1] == "old":
    import torch  # before rpgan: OpenMP starts with its default (spinning) wait policy
import rpgan  # noqa: F401  (new: sets OMP_WAIT_POLICY=PASSIVE before torch loads)
import torch
from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.presets import get_preset
from rpgan.training.checkpoint import new_training_state
from rpgan.training.train import train_step

preset = get_preset("digits")
config = RunConfig(model=preset.model, train=preset.train, data="digits", preset="digits")
data = load_data("digits", 16, 3)
state = new_training_state(config, "cpu")
train_step(state, data, config.train, "cpu")  # warm-up
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    train_step(state, data, config.train, "cpu")
print(time.perf_counter() - t0, torch.get_num_threads())
"""
BUSY = "while True: pass"


def measure(candidate: str, steps: int, busy: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        out = subprocess.run([sys.executable, "-c", TRAIN, candidate, str(steps)], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return float(out[0]), int(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--busy", default="0,1,2", help="numbers of busy processes beside the training")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    busy = [int(b) for b in args.busy.split(",")]
    candidates = ("old", "new")
    times: dict[tuple[str, int], list[float]] = {}
    threads = {}
    for _ in range(args.rounds):
        for b in busy:
            for c in candidates:
                seconds, threads[c] = measure(c, args.steps, b)
                times.setdefault((c, b), []).append(seconds)
    cores = len(os.sched_getaffinity(0))
    print(f"{args.steps} digits steps, {cores} cores, torch threads {threads}, median of {args.rounds} rounds")
    print(f"{'busy':>5s} " + " ".join(f"{c + ' s':>9s} {c + ' x':>7s}" for c in candidates) + f" {'new/old':>8s}"
          f" {'fair x':>7s}")
    for b in busy:
        cells, med = [], {}
        for c in candidates:
            med[c] = statistics.median(times[(c, b)])
            quiet = statistics.median(times[(c, busy[0])])
            cells.append(f"{med[c]:9.1f} {med[c] / quiet:7.2f}")
        fair = max(1.0, (threads["new"] + b) / cores) if b else 1.0
        print(f"{b:5d} " + " ".join(cells) + f" {med['new'] / med['old']:8.2f} {fair:7.2f}")


if __name__ == "__main__":
    main()
