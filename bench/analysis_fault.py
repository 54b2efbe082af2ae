"""Analysis with one actor killed vs undisturbed: the wall time a lost worker costs (issue 16).

    python bench/analysis_fault.py [--ckpt RUN] [--evaluations 40] [--chunk 5] [--workers 2] [--rounds 2]

The job is `rpgan analyze`'s fan-out (Fanout.run of D_{l->1} evaluations in chunks of --chunk, one
call per chunk) on one private local Ray, two candidates side by side in one process:
  undisturbed   the job as it runs
  one killed    the same job, one actor SIGKILLed the moment the first result comes back (before
                the next call goes out); Ray restarts it and reruns the call it lost, if any
Time lost = killed - undisturbed. One chunk's time is the mean time of one call on one actor,
from the undisturbed run, where the actors start together and finish a call each per wave:
(last result - first result) / (calls per actor - 1). Actor start-up is in both times; a few
calls run first, untimed (Ray's own processes are busy for a while after it starts). The
rounds alternate the order of the candidates and which actor dies: the busy one, near the end of
its first call (the most work a kill can lose, a whole chunk, plus the restart), then the idle one,
which has just returned its first result (no work lost, only the restart). The results of the two
candidates are checked equal.

Without --ckpt a `digits`-preset generator is trained for 2 steps in a temporary directory: the
speed of an analysis does not depend on the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from analysis import fanout
from analysis.analyze import evaluate
from analysis.fanout import Fanout
from analysis.responsibility import draw
from rpgan.config import RunConfig
from rpgan.distributed.ray_session import connect
from rpgan.io.data import training_images
from rpgan.presets import get_preset
from rpgan.training.checkpoint import load_generator
from rpgan.training.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the process helpers it shares
from tests.processes import descendants  # noqa: E402


class Timed(fanout.Progress):
    """A silent progress line that records when each result came back and, if `victim` says so,
    kills an actor at the first: the "busy" one or the "idle" one that has just returned."""

    times: list[float] = []
    victim: str | None = None
    killed: list[int] = []

    def update(self, step: int, metrics=None) -> None:
        Timed.times.append(time.perf_counter())
        if step == 1 and Timed.victim:
            titles = actors()
            busy = [pid for pid, title in titles.items() if title.endswith(".run")]
            idle = [pid for pid in titles if pid not in busy]
            pick = (busy if Timed.victim == "busy" else idle) or busy or idle
            Timed.killed = [pick[0]]
            os.kill(pick[0], signal.SIGKILL)


def actors() -> dict[int, str]:
    """pid -> process title of this process's analysis actors (Ray's title names the method while
    a call runs: ray::AnalysisWorker.run)."""
    found = {}
    for pid in descendants(os.getpid()):
        try:
            title = (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]).decode()
        except OSError:
            continue
        if title.startswith("ray::AnalysisWorker"):
            found[pid] = title
    return found


def digits_checkpoint(into: Path) -> Path:
    p = get_preset("digits")
    config = RunConfig(model=p.model, data=p.data, preset="digits",
                       train=dataclasses.replace(p.train, steps=2, sample_every=0, checkpoint_every=2))
    return train(config, training_images(config), into, quiet=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, help="a checkpoint or run [default: digits preset, 2 steps]")
    ap.add_argument("--evaluations", type=int, default=40)
    ap.add_argument("--chunk", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(connect(num_cpus=os.cpu_count()))
    fanout.Progress = Timed
    with tempfile.TemporaryDirectory() as tmp:
        generator, _, ckpt = load_generator(args.ckpt or digits_checkpoint(Path(tmp) / "digits"))
        draws = draw(generator, args.evaluations, seed=0)
        calls = [(evaluate, (draws.chunk(a, a + args.chunk), a, "buckets", 0.0))
                 for a in range(0, args.evaluations, args.chunk)]
        print(f"{ckpt}: blocks {list(generator.blocks)}, {args.evaluations} evaluations in {len(calls)} calls of "
              f"{args.chunk}, {args.workers} actors of {os.cpu_count() // args.workers} thread(s)")
        if len(calls) < 2 * args.workers:
            ap.error("--evaluations must make at least 2 calls (chunks) per worker")
        fan = Fanout(workers=args.workers)
        fan.run(calls[: args.workers], ckpt)  # warm-up, untimed; also resolves the Inception weights
        rows = []
        for r in range(args.rounds):
            measured, results = {}, {}
            victim = "busy" if r % 2 == 0 else "idle"
            for kill in ((False, True) if r % 2 == 0 else (True, False)):
                Timed.times, Timed.victim = [], victim if kill else None
                t0 = time.perf_counter()
                results[kill] = fan.run(calls, ckpt)
                measured[kill] = time.perf_counter() - t0
                if kill:
                    print(f"  round {r + 1} one killed ({victim}, pid {Timed.killed[0]}): {measured[kill]:.1f} s",
                          flush=True)
                else:
                    chunk = (Timed.times[-1] - Timed.times[0]) / (len(calls) / args.workers - 1)
                    start = Timed.times[0] - t0 - chunk
                    print(f"  round {r + 1} undisturbed: {measured[kill]:.1f} s, one chunk {chunk:.1f} s, "
                          f"actor start-up {start:.1f} s", flush=True)
            assert results[True] == results[False], "a killed actor changed the numbers"
            rows.append((victim, measured[False], measured[True], chunk))
    print(f"{'round':6s} {'killed':6s} {'undisturbed s':>14s} {'one killed s':>13s} {'lost s':>7s} {'chunk s':>8s} "
          f"{'lost/chunk':>11s}")
    for r, (victim, calm, hit, chunk) in enumerate(rows):
        print(f"{r + 1:<6d} {victim:6s} {calm:14.1f} {hit:13.1f} {hit - calm:7.1f} {chunk:8.1f} "
              f"{(hit - calm) / chunk:11.2f}")
    for victim, what in (("busy", "its call nearly done: restart + that call"), ("idle", "restart only")):
        mine = [(hit - calm, chunk) for v, calm, hit, chunk in rows if v == victim]
        if mine:
            lost, chunk = (sum(x) / len(mine) for x in zip(*mine))
            print(f"time lost, {victim} actor killed ({what}): {lost:.1f} s = {lost / chunk:.2f} chunks "
                  f"(mean of {len(mine)}; one chunk {chunk:.1f} s)")
    print("numbers identical with and without the kill")


if __name__ == "__main__":
    main()
