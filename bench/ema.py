"""The moving average of the generator (--ema-kimg): what it costs a training step, and what it
does to FID and to the layers' responsibility.

    python bench/ema.py cost [--preset digits] [--steps 30] [--rounds 3]
    python bench/ema.py quality [--preset digits] [--seeds 0,1,2] [--ema-kimg 10] [--fid-samples 500]
                                [--data SPEC] [--train-steps N --checkpoint-every N]

`cost`: the same steps from the same weights, with and without the average, alternating rounds
in this process (one thread); prints the median step time of each and their ratio.
`quality`: trains the preset once per seed with the average (the trained weights are those of
a run without it: tests/test_ema.py), then measures FID of both generators at every kept
checkpoint on the same paths and reference (`rpgan fid`'s function, in this process), and the
mean semantic and color D_{l->1} of both at the last one. `--data`, `--train-steps` and
`--checkpoint-every` replace the preset's (cifar10-cpu on a local CIFAR-10 file, a shorter run);
the training's own evaluations are off (this measures both generators itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from analysis.analyze import AnalyzeConfig, measure
from analysis.fanout import Fanout
from analysis.fid import fid
from rpgan.config import RunConfig
from rpgan.io.data import training_images
from rpgan.io.run import Run
from rpgan.presets import get_preset
from rpgan.training.checkpoint import load_generator, new_training_state
from rpgan.training.loop import train_step
from rpgan.training.train import train

import torch


def config_of(preset: str, data: str | None = None, **train) -> RunConfig:
    """The preset's run on `data` (default: its own data set), with `train` settings replaced."""
    p = get_preset(preset)
    return RunConfig(model=p.model, train=dataclasses.replace(p.train, **train), data=data or p.data, preset=preset)


def cost(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    base = config_of(args.preset)
    data = training_images(base)
    states = {"raw": new_training_state(base, "cpu"),
              "with average": new_training_state(config_of(args.preset, ema_kimg=10.0), "cpu")}
    configs = {"raw": base.train, "with average": dataclasses.replace(base.train, ema_kimg=10.0)}
    times = {name: [] for name in states}
    for _ in range(args.rounds):
        for name, state in states.items():
            train_step(state, data, configs[name], "cpu")  # warm
            start = time.perf_counter()
            for _ in range(args.steps):
                train_step(state, data, configs[name], "cpu")
            times[name].append((time.perf_counter() - start) / args.steps)
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in med.items():
        print(f"{name:13s} {t * 1000:7.1f} ms/step (rounds: {', '.join(f'{x * 1000:.1f}' for x in times[name])})")
    print(f"with average / raw {med['with average'] / med['raw']:.3f}")


def quality(args: argparse.Namespace) -> None:
    here = Fanout(workers=0)
    for seed in map(int, args.seeds.split(",")):
        schedule = {"steps": args.train_steps, "checkpoint_every": args.checkpoint_every}
        config = config_of(args.preset, args.data, seed=seed, ema_kimg=args.ema_kimg, eval_every=0,
                           **{k: v for k, v in schedule.items() if v})
        data = training_images(config)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            train(dataclasses.replace(config, dataset_size=len(data)), data, run_dir, quiet=True)
            for ckpt in Run.at(run_dir).checkpoints():
                scores = {}
                for weights in ("raw", "ema"):
                    fan = dataclasses.replace(here, generator_weights=weights)
                    scores[weights] = fid(ckpt, args.fid_samples, 0, fan, reference_n=args.fid_samples,
                                          out=Path(tmp) / f"fid-{weights}", prd=False)["fid"]
                print(f"seed {seed} step {Path(ckpt).name}: FID raw {scores['raw']:.2f}, average {scores['ema']:.2f}, "
                      f"average / raw {scores['ema'] / scores['raw']:.3f}", flush=True)
            last = Run.at(run_dir).checkpoints()[-1]
            for weights in ("raw", "ema"):
                generator = load_generator(last, weights=weights)[0]
                fan = dataclasses.replace(here, generator_weights=weights)
                summary = measure(generator, last, AnalyzeConfig(evaluations=args.evaluations, seed=0, grids=0),
                                  fan)[1]
                table = summary[summary["distance"].isin(["semantic", "color"])].pivot_table(
                    index="distance", columns="layer", values="ratio_mean")
                print(f"seed {seed} {weights}: mean D_(l->1) by layer\n{table.round(3).to_string()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("cost", "quality"))
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ema-kimg", type=float, default=10.0)
    ap.add_argument("--fid-samples", type=int, default=500)
    ap.add_argument("--evaluations", type=int, default=50)
    ap.add_argument("--data", help="quality: the data set [default: the preset's]")
    ap.add_argument("--train-steps", type=int, help="quality: steps of each run [default: the preset's]")
    ap.add_argument("--checkpoint-every", type=int, help="quality: steps between measured checkpoints")
    args = ap.parse_args()
    cost(args) if args.part == "cost" else quality(args)


if __name__ == "__main__":
    main()
