"""The fixed cost of a sweep trial: an older rpgan and this one run the same quick sweep, side by
side, and each trial's wall time is compared with the compute it needs:

    python bench/trial_cost.py [--old REV] [--steps 100] [--space blocks_per_bucket=1,3,10,30]

Candidates (each `rpgan sweep ablation_blocks --quick` in a fresh process and storage, the same
cached reference features, the same seed):
  old   the code at git revision REV (a temporary worktree; default: the last commit before the
        in-process trials, 3af34a3): every trial trains on a Ray Train worker and evaluates on
        analysis actors started for it
  new   this checkout: a one-worker trial trains and evaluates in its own process, which Tune
        reuses for the next trial (imports and Inception loaded once)
The compute of a trial is measured in this process on the same configuration with as many
threads as a trial holds (1): its training (`train`) and its evaluation (`sweeps.trial.evaluate`),
warm. Printed per candidate: the command's wall time, the mean trial wall time (Tune's start to
end of each trial), the mean compute, and the fixed cost = trial wall - compute, and the trials'
FIDs (the same numbers, or the difference explained).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.fanout import Fanout
from analysis.fid import reference_features
from rpgan.io.data import training_images
from rpgan.training.checkpoint import load_generator
from rpgan.training.evaluation import REFERENCE_SEED
from rpgan.training.train import train
from sweeps import get_sweep
from sweeps.commands import parse_space
from sweeps.spec import plan
from sweeps.trial import evaluate

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
OLD = "3af34a3"  # the last commit whose one-worker trials ran on Ray Train
STAMP = re.compile(r"^\[\S+ \d+/\d+ trials, (?:(\d+):)?(\d+):(\d+)\] (\S+): (training|done)")


def seconds(h: str | None, m: str, s: str) -> int:
    return int(h or 0) * 3600 + int(m) * 60 + int(s)


def run_sweep(tree: Path, args: list[str], storage: Path, cache: Path) -> tuple[float, dict[str, float], pd.DataFrame]:
    """`rpgan sweep ARGS` with the code of `tree`: its wall time, each trial's wall time (from
    the progress lines, to the second) and its trials table."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "OMP_WAIT_POLICY")}
    env.update(PYTHONPATH=str(tree), RPGAN_CACHE=str(cache))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rpgan.cli", "sweep", "ablation_blocks", "--quick", *args,
                           "--storage", str(storage)], env=env, capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the sweep failed:\n{done.stderr[-3000:]}")
    started, trials = {}, {}
    for line in done.stderr.splitlines():
        if m := STAMP.match(line):
            at = seconds(*m.group(1, 2, 3))
            if m.group(5) == "training":
                started[m.group(4)] = at
            else:
                trials[m.group(4)] = at - started[m.group(4)]
    return wall, trials, pd.read_parquet(storage / "ablation_blocks-quick" / "trials")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=OLD, help="git revision of the old candidate")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--space", default="blocks_per_bucket=1,3,10,30")
    args = ap.parse_args()
    sweep_args = ["--steps", str(args.steps), "--space", args.space, "--seed", "0"]
    chosen = plan(get_sweep("ablation_blocks"), True, 0, parse_space((args.space,)), steps=args.steps)
    first = chosen.trials[0].config
    data = training_images(first)
    with tempfile.TemporaryDirectory(prefix="rpgan-trial-cost-") as tmp:
        tmp = Path(tmp)
        os.environ["RPGAN_CACHE"] = str(tmp / "cache")
        here = Fanout(workers=0)
        reference = reference_features(first.data, first.model.image_size, first.model.channels,
                                       chosen.budget.fid_samples, here, REFERENCE_SEED)[0]  # cached for both
        torch.set_num_threads(1)  # what a trial holds
        compute = {}
        for trial in chosen.trials:
            config = dataclasses.replace(trial.config, dataset_size=len(data))
            t0 = time.perf_counter()
            ckpt = train(config, data, tmp / "direct" / trial.key, quiet=True)
            evaluate(chosen, load_generator(ckpt)[0], ckpt, config.train.seed, reference, here)
            compute[trial.key] = time.perf_counter() - t0
        torch.set_num_threads(os.cpu_count() or 1)

        old = tmp / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.old], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            results = {name: run_sweep(tree, sweep_args, tmp / f"sweep-{name}", tmp / "cache")
                       for name, tree in (("old", old), ("new", ROOT))}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)

    n = len(chosen.trials)
    print(f"ablation_blocks --quick {args.space}: {n} trials x {args.steps} steps, FID on "
          f"{chosen.budget.fid_samples} images, {chosen.budget.evaluations} evaluations; {os.cpu_count()} cores; "
          f"compute per trial (1 thread, warm) {sum(compute.values()) / n:.1f} s")
    print(f"{'':5s} {'command s':>10s} {'trial s':>8s} {'compute s':>10s} {'fixed s/trial':>14s}")
    fixed = {}
    for name, (wall, trials, _) in results.items():
        mean_trial = sum(trials.values()) / len(trials)
        fixed[name] = mean_trial - sum(compute.values()) / n
        print(f"{name:5s} {wall:10.1f} {mean_trial:8.1f} {sum(compute.values()) / n:10.1f} {fixed[name]:14.1f}")
    print(f"new / old: command {results['new'][0] / results['old'][0]:.2f}, fixed cost per trial "
          f"{fixed['new'] / fixed['old']:.2f}")
    fids = {name: r[2].set_index("trial")["fid"].sort_index() for name, r in results.items()}
    print("FID per trial (old, new):")
    for key in fids["old"].index:
        print(f"  {key}: {fids['old'][key]:.4f}  {fids['new'][key]:.4f}"
              f"{'' if fids['old'][key] == fids['new'][key] else '  (differ)'}")


if __name__ == "__main__":
    main()
