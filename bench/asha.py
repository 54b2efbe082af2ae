"""Early stopping against the full grid on a quick sweep: the same best value, in what share of
the grid's trial-seconds, each run the way `rpgan sweep` runs it, one after the other:

    python bench/asha.py [--sweep ablation_blocks] [--samples 3] [--grace-period N] [--reduction-factor R]
                         [--eval-samples K] [--candidates grid,asha,halving]

Candidates, on the same trials (the sweep's --quick variant, --samples seeds) and the same cached
reference features: `grid` (every trial to the end), `asha` (`--scheduler asha`: Tune's
asynchronous successive halving) and `halving` (`--scheduler halving`: synchronous successive
halving, sweeps.runner). The grid also measures FID during training at the rungs
(`--eval-every GRACE --eval-samples K`), so its curves say offline which trials a halving
would keep at each rung (`halving_keeps` on the recorded FIDs) and what it would cost; those
evaluations' own time is left out of the grid's trial-seconds, which are the plain grid's.

Trial-seconds are the sum over trials of training plus evaluation time (a stopped trial: its
training until it stopped). Printed per candidate: trials finished and stopped, trial-seconds,
the sweep's wall time, the best value of the swept key by mean FID over seeds of the finished
trials; then each candidate's trial-seconds over the grid's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweeps.runner import halving_keeps

import pandas as pd

KEYS = ("blocks_per_bucket", "n_buckets", "random_buckets", "generator")


def run(args: list[str], storage: Path) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    start = time.perf_counter()
    command = [str(Path(sys.executable).with_name("rpgan")), "sweep", *args, "--storage", str(storage)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    folder = next(storage.iterdir())
    return time.perf_counter() - start, pd.read_parquet(folder / "trials"), pd.read_parquet(folder / "metrics")


def offline_halving(trials: pd.DataFrame, metrics: pd.DataFrame, rungs: list[int], steps: int,
                    reduction_factor: int) -> tuple[list[str], float]:
    """Which trials a synchronous halving keeps to the end, by the grid's recorded FIDs at the
    rungs, and its trial-seconds: every trial's training up to the rung where it stops (its
    training time in proportion of steps, its curve evaluations left out), its rung evaluations
    (their recorded time), and the survivors' whole training and final evaluation."""
    t = trials.set_index("trial")
    curve_time = metrics.groupby("trial")["eval_time_s"].sum()
    train = t["train_time_s"] - curve_time  # the plain training
    alive, seconds = list(t.index), 0.0
    for rung in rungs:
        at = metrics[metrics["step"] == rung].set_index("trial")
        keep = halving_keeps({k: at.loc[k, "fid"] for k in alive}, reduction_factor)
        for key in alive:
            seconds += at.loc[key, "eval_time_s"]
            if key not in keep:
                seconds += train[key] * rung / steps
        fids = ", ".join(f"{at.loc[k, 'fid']:.1f}" for k in keep)
        print(f"  offline halving at step {rung}: keeps {keep} (FID {fids}) of {len(alive)}")
        alive = keep
    seconds += sum(train[k] + t.loc[k, "eval_time_s"] for k in alive)
    return alive, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", default="ablation_blocks")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grace-period", type=int, default=125)
    ap.add_argument("--reduction-factor", type=int, default=4)
    ap.add_argument("--eval-samples", type=int, default=50)
    ap.add_argument("--candidates", default="grid,asha,halving")
    args = ap.parse_args()
    base = [args.sweep, "--quick", "--samples", str(args.samples), "--seed", str(args.seed)]
    rungs = ["--grace-period", str(args.grace_period), "--reduction-factor", str(args.reduction_factor),
             "--eval-samples", str(args.eval_samples)]
    flags = {"grid": [*base, "--eval-every", str(args.grace_period), "--eval-samples", str(args.eval_samples)],
             "asha": [*base, "--scheduler", "asha", *rungs], "halving": [*base, "--scheduler", "halving", *rungs]}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.candidates.split(","):
            wall, trials, metrics = run(flags[name], Path(tmp) / name)
            key = next(k for k in KEYS if trials[k].nunique() > 1)
            ok = trials[trials["status"] == "ok"]
            means = ok.groupby(key)["fid"].mean()
            seconds[name] = (trials["train_time_s"].fillna(0) + trials["eval_time_s"].fillna(0)).sum()
            if name == "grid":
                seconds[name] -= metrics["eval_time_s"].sum()  # the curves, not part of a plain grid
            print(f"{name:7s} {len(ok)} finished, {(trials['status'] == 'stopped').sum()} stopped; trial-seconds "
                  f"{seconds[name]:7.1f}, wall {wall:6.1f} s; best {key} {means.idxmin()} (mean FID "
                  f"{means.min():.2f}); mean FID by {key}: {means.round(2).to_dict()}", flush=True)
            if name == "grid":
                steps = int(trials["step"].max())
                points = [args.grace_period * args.reduction_factor**k for k in range(steps.bit_length())]
                kept, predicted = offline_halving(trials, metrics, [r for r in points if r < steps], steps,
                                                  args.reduction_factor)
                print(f"  offline halving: {kept} finish, about {predicted:.1f} trial-seconds, "
                      f"{predicted / seconds['grid']:.3f} of the grid's", flush=True)
    for name in seconds:
        if name != "grid" and "grid" in seconds:
            print(f"{name} / grid trial-seconds {seconds[name] / seconds['grid']:.3f}")


if __name__ == "__main__":
    main()
