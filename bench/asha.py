"""ASHA against the full grid on a quick sweep: the same best value, in what share of the grid's
trial-seconds, both run the way `rpgan sweep` runs them, one after the other in this process:

    python bench/asha.py [--sweep ablation_blocks] [--samples 3] [--grace-period N] [--reduction-factor R]
                         [--eval-samples K]

Candidates, on the same trials (the sweep's --quick variant, --samples seeds) and the same cached
reference features: `grid` (every trial to the end) and `asha` (`--scheduler asha`: FID during
training at every rung, trials stopped at a rung when their FID trails). Trial-seconds are the
sum over trials of training plus evaluation time (a stopped trial: its training until it
stopped). Printed per candidate: trials finished and stopped, trial-seconds, the sweep's wall
time, the best value of the swept key by mean FID over seeds of the finished trials; then the
ratio of trial-seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def run(args: list[str], storage: Path) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    command = [str(Path(sys.executable).with_name("rpgan")), "sweep", *args, "--storage", str(storage)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, pd.read_parquet(next(storage.iterdir()) / "trials")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", default="ablation_blocks")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grace-period", type=int, help="[default: the sweep's, half the steps]")
    ap.add_argument("--reduction-factor", type=int, help="[default: the sweep's, 2]")
    ap.add_argument("--eval-samples", type=int, help="[default: the sweep's --fid-samples]")
    args = ap.parse_args()
    base = [args.sweep, "--quick", "--samples", str(args.samples), "--seed", str(args.seed)]
    asha = [*base, "--scheduler", "asha", *(["--grace-period", str(args.grace_period)] if args.grace_period else []),
            *(["--reduction-factor", str(args.reduction_factor)] if args.reduction_factor else []),
            *(["--eval-samples", str(args.eval_samples)] if args.eval_samples else [])]
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in (("grid", base), ("asha", asha)):
            wall, trials = run(flags, Path(tmp) / name)
            key = next(k for k in ("blocks_per_bucket", "n_buckets", "random_buckets", "generator")
                       if trials[k].nunique() > 1)
            ok = trials[trials["status"] == "ok"]
            best = ok.groupby(key)["fid"].mean().idxmin()
            seconds[name] = (trials["train_time_s"].fillna(0) + trials["eval_time_s"].fillna(0)).sum()
            print(f"{name:4s} {len(ok)} finished, {(trials['status'] == 'stopped').sum()} stopped; trial-seconds "
                  f"{seconds[name]:7.1f}, wall {wall:6.1f} s; best {key} {best} (mean FID "
                  f"{ok.groupby(key)['fid'].mean().min():.2f}); "
                  f"mean FID by {key}: {ok.groupby(key)['fid'].mean().round(2).to_dict()}")
    print(f"asha / grid trial-seconds {seconds['asha'] / seconds['grid']:.3f}")


if __name__ == "__main__":
    main()
