"""`make demo`'s commands, timed, for an older rpgan and this one, one after another:

    python bench/demo.py [--old REV]

Each candidate runs the Makefile's demo recipe as a user does (`rpgan sweep ablation_blocks
--quick --seed 0`, `rpgan results`, `results --best`, `analyze --evaluations 30 --seed 0` and
`sample --n 64` on the best trial), every command a process of its own with the candidate's code
first on PYTHONPATH, in a fresh folder and a fresh rpgan cache (the reference features and the
Inception weights' conversion count, as for a new user). Candidates:
  old   the code at git revision REV (a temporary worktree; default 3af34a3, the last commit
        before issue 32's in-process trials)
  new   this checkout
Printed: each command's wall time per candidate and new / old; the trials' FIDs and the largest
difference between the best trial's responsibility summaries (the same numbers, or how far
apart).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OLD = "3af34a3"  # the last commit whose one-worker trials ran on Ray Train
SWEEP = Path("runs/ablation_blocks-quick")


def run_demo(tree: Path, folder: Path) -> dict[str, float]:
    """The demo's commands with the code of `tree`, in `folder`: wall seconds per command."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "OMP_WAIT_POLICY")}
    env.update(PYTHONPATH=str(tree), RPGAN_CACHE=str(folder / "cache"))
    folder.mkdir(parents=True)

    def rpgan(*args: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "rpgan.cli", *args], env=env, cwd=folder, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"{tree}: rpgan {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return time.perf_counter() - t0, done.stdout.strip()

    times = {}
    times["sweep"], _ = rpgan("sweep", "ablation_blocks", "--quick", "--seed", "0", "--resume")
    times["results"], _ = rpgan("results", "ablation_blocks", "--quick")
    times["results --best"], best = rpgan("results", "ablation_blocks", "--quick", "--best")
    times["analyze"], _ = rpgan("analyze", "--ckpt", best, "--evaluations", "30", "--seed", "0",
                                "--out", str(SWEEP / "best" / "analysis"))
    times["sample"], _ = rpgan("sample", "--ckpt", best, "--n", "64", "--seed", "0",
                               "--out", str(SWEEP / "best" / "sample_grid.png"))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=OLD, help="git revision of the old candidate")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rpgan-demo-") as tmp:
        tmp = Path(tmp)
        old = tmp / "old-tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.old], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            times = {name: run_demo(tree, tmp / name) for name, tree in (("old", old), ("new", ROOT))}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
        trials = {name: pd.read_parquet(tmp / name / SWEEP / "trials").set_index("trial")["fid"].sort_index()
                  for name in times}
        summaries = {name: pd.read_parquet(tmp / name / SWEEP / "best" / "analysis" / "responsibility_summary")
                     .sort_values(["layer", "distance"]).reset_index(drop=True) for name in times}

    print(f"make demo's commands, {os.cpu_count()} cores, a fresh cache each; old = {args.old}")
    print(f"{'command':16s} {'old s':>8s} {'new s':>8s} {'new/old':>8s}")
    for command in times["old"]:
        o, n = times["old"][command], times["new"][command]
        print(f"{command:16s} {o:8.1f} {n:8.1f} {n / o:8.2f}")
    o, n = sum(times["old"].values()), sum(times["new"].values())
    print(f"{'all':16s} {o:8.1f} {n:8.1f} {n / o:8.2f}")
    print("FID per trial (old, new, new - old):")
    for key in trials["old"].index:
        o, n = trials["old"][key], trials["new"][key]
        print(f"  {key}: {o:.4f}  {n:.4f}  {n - o:+.1e}")
    for column in ("spread_mean", "ratio_mean", "ratio_std"):
        a, b = summaries["old"][column], summaries["new"][column]
        apart = "bit-identical" if a.equals(b) else f"largest relative difference {((a - b).abs() / a.abs()).max():.1e}"
        print(f"best trial's responsibility_summary {column}: {apart}")


if __name__ == "__main__":
    main()
