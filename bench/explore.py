"""How fast `rpgan explore` answers a block swap: the whole request (render, PNG, JSON, HTTP on
loopback) for the digits preset (4 buckets x 10 blocks, 16x16), side by side in one process:

  swap, HTTP         a block swapped over a real socket: the rows of the other buckets rendered
                     in one batch (the page's latency)
  swap               the same through Flask's test client (no socket)
  swap, one by one   the same with every image of the rows rendered alone (no batching)
  back (cached)      a path seen before: every row from the cache

    python bench/explore.py [--ckpt RUN] [--repeats 40] [--threads 2]

Without --ckpt the digits preset is trained for 1 step (the speed does not depend on the weights).
Each swap changes one bucket of the previous path to a block drawn from a fixed seed, so the other
rows are not in the cache; medians of --repeats swaps, interleaved.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from analysis.explore.server import create_app, listen, url
from analysis.explore.views import Explorer, State, _png
from rpgan.config import RunConfig
from rpgan.io.data import load_data, to_uint8
from rpgan.io.images import render
from rpgan.model.paths import frozen_path_variations
from rpgan.presets import get_preset
from rpgan.training.train import train

import torch


class OneByOne(Explorer):
    """The explorer with each image of a row rendered by itself."""

    def _render_rows(self, state: State, buckets: list[int]) -> list[list[str]]:
        path = torch.tensor(state.path)
        return [[_png(to_uint8(render(self.generator, p[None]))[0])
                 for p in frozen_path_variations(path, i, torch.arange(self.blocks[i]))] for i in buckets]


def digits_checkpoint(folder: Path) -> Path:
    preset = get_preset("digits")
    config = RunConfig(model=preset.model, train=dataclasses.replace(preset.train, steps=1, sample_every=0),
                       data="digits", preset="digits")
    return train(config, load_data("digits", preset.model.image_size, preset.model.channels), folder, quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a run or checkpoint [default: the digits preset after 1 step]")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.ckpt or str(digits_checkpoint(Path(tmp) / "digits"))
        batched, alone = Explorer(source), OneByOne(source)
        client, naive = create_app(batched, None).test_client(), create_app(alone, None).test_client()
        server = listen(create_app(batched, None), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = url(server)
        blocks = batched.blocks
        rng = torch.Generator().manual_seed(0)
        path = list(batched.random_state(0).path)
        times: dict[str, list[float]] = {"swap, HTTP": [], "swap": [], "swap, one by one": [], "back (cached)": []}

        def timed(name: str, get, query: str) -> None:
            start = time.perf_counter()
            get(query)
            times[name].append(time.perf_counter() - start)

        getters = {"swap, HTTP": lambda q: urllib.request.urlopen(f"{base}api/view?{q}").read(),
                   "swap": lambda q: client.get(f"/api/view?{q}").data,
                   "swap, one by one": lambda q: naive.get(f"/api/view?{q}").data}
        for k in range(args.repeats):
            for name, get in getters.items():
                previous = ",".join(map(str, path))
                bucket = k % len(blocks)  # another block of this bucket, drawn from the seed
                shift = 1 + int(torch.randint(blocks[bucket] - 1, (1,), generator=rng))
                path[bucket] = (path[bucket] + shift) % blocks[bucket]
                timed(name, get, "path=" + ",".join(map(str, path)))
            timed("back (cached)", getters["swap"], f"path={previous}")
        server.shutdown()
    print(f"explorer on {batched.config.preset or batched.config.model.arch}: blocks {'x'.join(map(str, blocks))}, "
          f"{batched.config.model.image_size}px, {args.threads} threads, {args.repeats} swaps each")
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, ms in median.items():
        print(f"  {name:18s} {ms:7.1f} ms  (p90 {sorted(times[name])[int(0.9 * len(times[name]))] * 1000:.1f})")
    print(f"one by one / batched: {median['swap, one by one'] / median['swap']:.2f}x; "
          f"swap / cached back: {median['swap'] / median['back (cached)']:.2f}x; "
          f"HTTP adds {median['swap, HTTP'] - median['swap']:.1f} ms")


if __name__ == "__main__":
    main()
