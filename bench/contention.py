"""Training beside busy processes: a digits training alone and beside 1 and 2 processes that keep
a core busy, with torch's OpenMP threads waiting the old way (libgomp's default: they spin for a
while) and rpgan's way (`rpgan.OPENMP`, set by `import rpgan` before torch loads), side by side:

    python bench/contention.py [--steps 40] [--busy 0,1,2] [--rounds 2] [--spin 1000,10000]
                               [--preset digits] [--data SPEC] [--candidate NAME:VAR=VALUE,VAR=VALUE]

Each measurement is a fresh process whose environment holds the candidate's OpenMP settings
(OpenMP reads them when torch loads it): old has none, new has rpgan.OPENMP, and `--spin N` adds
a candidate with GOMP_SPINCOUNT=N (how long a waiting thread spins before it sleeps), and
`--candidate` one with any OpenMP variables, to compare others. Prints seconds for the steps
(median over rounds, candidates alternating) and each one's ratio to its quiet time; a fair share
of the machine's cores predicts (threads + busy) / cores beside `busy` processes once they outnumber the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import rpgan

TRAIN = """
import sys, time
import torch  # first: the environment alone decides OpenMP's policy, whatever rpgan would set
import rpgan  # noqa: F401
from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.presets import get_preset
from rpgan.training.checkpoint import new_training_state
from rpgan.training.loop import train_step

preset = get_preset(sys.argv[2])
config = RunConfig(model=preset.model, train=preset.train, data=sys.argv[3] or preset.data, preset=sys.argv[2])
data = load_data(config.data, preset.model.image_size, preset.model.channels)
state = new_training_state(config, "cpu")
train_step(state, data, config.train, "cpu")  # warm-up
t0 = time.perf_counter()
for _ in range(int(sys.argv[1])):
    train_step(state, data, config.train, "cpu")
print(time.perf_counter() - t0, torch.get_num_threads())
"""
BUSY = "while True: pass"
OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES")


def measure(settings: dict[str, str], steps: int, busy: int, preset: str, data: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARS} | settings
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        out = subprocess.run([sys.executable, "-c", TRAIN, str(steps), preset, data], env=env, capture_output=True,
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
    ap.add_argument("--spin", default="", help="more candidates: GOMP_SPINCOUNT values, e.g. 1000,10000")
    ap.add_argument("--candidate", action="append", default=[], help="NAME:VAR=VALUE,VAR=VALUE (repeatable)")
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--data", default="", help="[default: the preset's]")
    args = ap.parse_args()
    busy = [int(b) for b in args.busy.split(",")]
    candidates = {"old": {}, "new": dict(rpgan.OPENMP)}
    candidates |= {f"spin{n}": {"GOMP_SPINCOUNT": n} for n in args.spin.split(",") if n}
    for text in args.candidate:
        name, _, assignments = text.partition(":")
        candidates[name] = dict(a.split("=", 1) for a in assignments.split(","))
    times: dict[tuple[str, int], list[float]] = {}
    threads = {}
    for _ in range(args.rounds):
        for b in busy:
            for name, settings in candidates.items():
                seconds, threads[name] = measure(settings, args.steps, b, args.preset, args.data)
                times.setdefault((name, b), []).append(seconds)
    cores = len(os.sched_getaffinity(0))
    print(f"{args.steps} {args.preset} steps, {cores} cores, torch threads {threads}, median of {args.rounds} rounds; "
          f"new = {rpgan.OPENMP}")
    print(f"{'busy':>5s} " + " ".join(f"{c + ' s':>12s} {'x':>5s}" for c in candidates) + f" {'fair x':>7s}")
    for b in busy:
        cells = []
        for c in candidates:
            med, quiet = statistics.median(times[(c, b)]), statistics.median(times[(c, busy[0])])
            cells.append(f"{med:12.1f} {med / quiet:5.2f}")
        fair = max(1.0, (threads["new"] + b) / cores) if b else 1.0
        print(f"{b:5d} " + " ".join(cells) + f" {fair:7.2f}")
    old, new = (statistics.median(times[(c, busy[0])]) for c in ("old", "new"))
    print(f"quiet: new / old {new / old:.2f}")


if __name__ == "__main__":
    main()
