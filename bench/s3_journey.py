"""The cost of remote storage: the same quick sweep (and `rpgan analyze` on its best trial) with
its runs on local disk and on S3, an S3 endpoint on 127.0.0.1 (moto's server, as in the tests).

    python bench/s3_journey.py [--steps 100] [--fid-samples 200] [--evaluations 8] [--order local,s3]

Candidates, run one after the other by this process as a user runs them (the `rpgan` command,
each with its own private Ray), with the same flags and cached reference features:
  local   --storage DIR      (a temporary directory)
  s3      --storage s3://rpgan/sweeps (every checkpoint, metrics file, grid and result row goes
          through pyarrow's S3 client; analysis reads the checkpoint through rpgan's cache)
Printed: each candidate's sweep and analyze wall times and the overhead s3 / local - 1. The
loopback endpoint has no network latency: this measures rpgan's and pyarrow's own cost of a
remote store (copies, listings, staging), not a cloud's bandwidth.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the S3 endpoint it shares
from tests.s3_server import BUCKET, start  # noqa: E402

RPGAN = str(Path(sys.executable).with_name("rpgan"))


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start_time = time.monotonic()
    done = subprocess.run([RPGAN, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"rpgan {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - start_time, done.stdout


def journey(storage: str, flags: list[str], env: dict[str, str]) -> dict[str, float]:
    sweep, _ = run(["sweep", "ablation_blocks", "--quick", *flags, "--storage", storage], env)
    _, best = run(["results", "ablation_blocks", "--quick", "--storage", storage, "--best"], env)
    analyze, _ = run(["analyze", "--ckpt", best.strip(), "--evaluations", "30", "--seed", "0"], env)
    return {"sweep": sweep, "analyze": analyze}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--fid-samples", type=int, default=200)
    ap.add_argument("--evaluations", type=int, default=8)
    ap.add_argument("--order", default="local,s3", help="which candidate runs first")
    args = ap.parse_args()
    flags = ["--steps", str(args.steps), "--fid-samples", str(args.fid_samples), "--evaluations", str(args.evaluations)]
    server, s3_env = start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RPGAN_CACHE": f"{tmp}/cache"}
            run(["fid-stats", "--data", "digits", "--image-size", "16", "--n", str(args.fid_samples),
                 "--seed", "0"], env)  # warm the shared reference features
            storages = {"local": f"{tmp}/sweeps", "s3": f"s3://{BUCKET}/sweeps"}
            times = {}
            for name in args.order.split(","):
                times[name] = journey(storages[name], flags, env | s3_env)
                print(f"{name:6s} sweep {times[name]['sweep']:7.1f} s   analyze {times[name]['analyze']:6.1f} s",
                      flush=True)
    finally:
        server.kill()
    for part in ("sweep", "analyze"):
        print(f"{part}: s3 / local = {times['s3'][part] / times['local'][part]:.3f} "
              f"(overhead {100 * (times['s3'][part] / times['local'][part] - 1):+.1f}%)")
    total = {k: sum(v.values()) for k, v in times.items()}
    print(f"journey: s3 / local = {total['s3'] / total['local']:.3f} "
          f"(overhead {100 * (total['s3'] / total['local'] - 1):+.1f}%)")


if __name__ == "__main__":
    main()
