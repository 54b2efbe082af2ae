"""Scheduling overhead of a sweep: a quick sweep on a local Ray Tune vs its trials run directly.

    python bench/sweep.py [--sweep ablation_blocks] [--steps 600] [--fid-samples 200] [--evaluations 8]

Candidates, on the same trials (the sweep's --quick variant) and the same cached reference features:
  direct   each trial in this process, one after another: `rpgan.training.train.train`, then the same
           evaluation (`sweeps.trial.evaluate`) in-process; torch uses every core
  sweep    `run_sweep` as `rpgan sweep` runs it: Tune trials, each training on a Ray Train worker
           (1 CPU) and evaluating on analysis actors, as many trials at once as the cores hold
Printed: the sum of the direct trials' training times, of their training + evaluation times, the
sweep's wall time (Ray start-up excluded, Tune, Train and actor start-up included), and the
overhead = sweep wall / direct sum - 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from analysis.fanout import Fanout
from analysis.fid import reference_features
from rpgan.distributed.ray_session import Workers, connect
from rpgan.io.data import training_images
from rpgan.io.run import Folder
from rpgan.training.checkpoint import load_generator
from rpgan.training.evaluation import REFERENCE_SEED
from rpgan.training.train import train
from sweeps import get_sweep
from sweeps.runner import concurrency, run_sweep
from sweeps.spec import plan
from sweeps.trial import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", default="ablation_blocks")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--fid-samples", type=int)
    ap.add_argument("--evaluations", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    chosen = plan(get_sweep(args.sweep), True, args.seed, steps=args.steps, fid_samples=args.fid_samples,
                  evaluations=args.evaluations)
    first = chosen.trials[0].config
    data = training_images(first)
    m = first.model
    local = Fanout(workers=0)
    reference = reference_features(first.data, m.image_size, m.channels, chosen.budget.fid_samples, local,
                                   REFERENCE_SEED)[0]  # cached: both candidates read the same file
    print(f"{chosen.sweep} --quick: {len(chosen.trials)} trials x {chosen.budget.steps} steps, FID on "
          f"{chosen.budget.fid_samples} images, {chosen.budget.evaluations} evaluations; {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        train_s, total_s = 0.0, 0.0
        for trial in chosen.trials:
            config = dataclasses.replace(trial.config, dataset_size=len(data))
            t0 = time.perf_counter()
            ckpt = train(config, data, Path(tmp) / "direct" / trial.key, quiet=True)
            t1 = time.perf_counter()
            row, _ = evaluate(chosen, load_generator(ckpt)[0], ckpt, config.train.seed, reference, local)
            t2 = time.perf_counter()
            train_s, total_s = train_s + t1 - t0, total_s + t2 - t0
            print(f"  direct {trial.key}: train {t1 - t0:.1f} s, evaluate {t2 - t1:.1f} s, FID {row['fid']:.2f}",
                  flush=True)

        print(connect(num_cpus=(os.cpu_count() or 1) + 1))  # as `rpgan sweep` starts a local Ray
        workers = Workers(1)
        t0 = time.perf_counter()
        failed = run_sweep(chosen, Folder(tmp, "sweep"), workers, concurrency(workers), local,
                           len(training_images(chosen.trials[0].config)))
        wall = time.perf_counter() - t0
    assert failed == 0, f"{failed} sweep trials failed"
    print(f"direct, sum of training times           {train_s:8.1f} s")
    print(f"direct, sum of training + evaluation    {total_s:8.1f} s")
    print(f"sweep wall time                         {wall:8.1f} s")
    print(f"overhead vs direct training + evaluation {(wall / total_s - 1) * 100:+.1f}%")
    print(f"overhead vs direct training alone        {(wall / train_s - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
