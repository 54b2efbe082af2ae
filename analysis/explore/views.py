"""What the explorer shows for one state of a model, as PNG data URLs, with its rows cached.

A state is a frozen path, and for a Gaussian-input model the seed of its z, and for an EigenGAN
its layers' subspace coefficients z_l. The view of a state is its image and one row per bucket:
- RPGAN ("paths"): every block of the bucket swapped into the path (the paper's Figure 3, live);
  clicking one makes it the path's block.
- a standard GAN, one block per bucket ("noise"): the image with the layer's weights perturbed,
  ROW_DRAWS fixed draws at the state's noise scale (the paper's Figure 5 baseline).
- EigenGAN ("eigen"): the image with the layer's coefficients z_l redrawn, ROW_DRAWS fixed draws.

A bucket's row does not depend on the bucket's own block, so swapping a block re-renders the
other rows only; the rows are rendered in one batch and kept in an LRU cache.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from analysis.responsibility import Draws, eigen_variations, noise_variations
from rpgan.config import GeneratorWeights
from rpgan.errors import UserError
from rpgan.io.data import to_uint8
from rpgan.io.images import render
from rpgan.io.run import checkpoint_location
from rpgan.model.paths import frozen_path_variations, parse_path, sample_paths
from rpgan.training.checkpoint import load_generator, read_step

import numpy as np
import torch
from PIL import Image
from torch import Tensor

Mode = Literal["paths", "noise", "eigen"]
ROW_DRAWS = 8  # images per row of a standard GAN (noise draws) or an EigenGAN (z_l draws)
CACHED_ROWS = 2048  # rows kept: a digits model's 4 rows x 10 blocks are about 12 KB
DEFAULT_NOISE = 0.5  # the larger of `rpgan analyze`'s default noise scales
MAX_NOISE = 2.0
COEFFICIENT_RANGE = 3.0  # EigenGAN sliders: z_l in [-3, 3] (z_l ~ N(0, 1))


class BadState(ValueError):
    """A request for a state the model does not have: one line saying what is wrong."""


@dataclass(frozen=True)
class State:
    """One view of the model: path [n_buckets] (0-based blocks), the seed of z for a Gaussian
    input, an EigenGAN's coefficients (layer-major, eigen_dims per layer), the rows' noise scale."""

    path: tuple[int, ...]
    z_seed: int | None = None
    coefficients: tuple[float, ...] | None = None
    noise: float = DEFAULT_NOISE

    def as_json(self) -> dict:
        return {"path": list(self.path), "path_text": ",".join(map(str, self.path)), "z": self.z_seed,
                "coefficients": None if self.coefficients is None else list(self.coefficients), "noise": self.noise}


def _png(image: Tensor) -> str:
    """uint8 [C, S, S] -> a PNG data URL at the image's own size (the page enlarges it)."""
    arr = image.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _seed(*keys: int) -> int:
    """A torch seed from several integers (the command's --seed, a counter ...), well mixed."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0])


class Explorer:
    """One model loaded from a checkpoint or run, and the views of its states.

    Thread-safe: a web server calls it from several threads; rendering holds a lock."""

    def __init__(self, source: str, device: str = "cpu", seed: int = 0, weights: GeneratorWeights = "auto"):
        self.source, self.device, self.seed, self.weights = source, device, seed, weights
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        ckpt = checkpoint_location(self.source)
        generator, config, _ = load_generator(ckpt, self.device, self.weights)
        self.generator, self.config, self.checkpoint, self.step = generator, config, ckpt, read_step(ckpt)
        self._rows: OrderedDict[tuple, list[str]] = OrderedDict()
        self.hits = self.misses = 0

    def reload(self) -> None:
        """Load the newest checkpoint of the source again (a run still training moves on); on a
        missing or broken one raise UserError and keep the model loaded before."""
        with self._lock:
            old = (self.generator, self.config, self.checkpoint, self.step, self._rows, self.hits, self.misses)
            try:
                self._load()
            except UserError:
                self.generator, self.config, self.checkpoint, self.step, self._rows, self.hits, self.misses = old
                raise

    # -- the model ---------------------------------------------------------------------------

    @property
    def blocks(self) -> tuple[int, ...]:
        return self.generator.blocks

    @property
    def mode(self) -> Mode:
        if self.config.model.arch == "eigengan":
            return "eigen"
        return "noise" if max(self.blocks) == 1 else "paths"

    @property
    def gaussian(self) -> bool:
        return self.config.model.input == "gaussian"

    def describe(self) -> dict:
        """The model as the page needs it: buckets, blocks, mode and what the controls allow."""
        m = self.config.model
        return {"checkpoint": self.checkpoint, "step": self.step, "arch": m.arch, "preset": self.config.preset,
                "data": self.config.data, "image_size": m.image_size, "blocks": list(self.blocks),
                "mode": self.mode, "gaussian": self.gaussian,
                "eigen_dims": m.eigen_dims if self.mode == "eigen" else 0,
                "coefficient_range": COEFFICIENT_RANGE, "max_noise": MAX_NOISE}

    # -- states ------------------------------------------------------------------------------

    def random_state(self, index: int) -> State:
        """The index-th random state of this explorer's seed: the same seed gives the same
        sequence of paths (and z) on every machine."""
        if index < 0:
            raise BadState(f"random state index must be 0 or more, got {index}")
        rng = torch.Generator().manual_seed(_seed(self.seed, index))
        path = tuple(sample_paths(self.blocks, 1, rng)[0].tolist())
        z_seed = _seed(self.seed, index, 1) % 2**53 if self.gaussian else None  # exact in JavaScript
        return State(path, z_seed, self._coefficients_of(z_seed))

    def parse(self, args: Mapping[str, str]) -> State:
        """A state from the page's query (path=3,0,7,1 z=SEED coefficients=0.1,-2,... noise=0.5);
        BadState names the first bad value."""
        unknown = sorted(set(args) - {"path", "z", "coefficients", "noise"})
        if unknown:
            raise BadState(f"unknown parameter {unknown[0][:40]!r}: a state is path, z, coefficients and noise")
        if "path" not in args:
            raise BadState("the request names no path: add path=3,0,7,1 (one block per bucket)")
        try:
            path = tuple(parse_path(args["path"], self.blocks).tolist())
        except UserError as e:
            raise BadState(str(e).removeprefix("--")) from None
        z_seed = None
        if self.gaussian:
            z_seed = _integer(args.get("z", "0"), "z", 0, 2**53)
        elif "z" in args:
            raise BadState("this model's input is a learned Z, not a Gaussian z: it takes no z")
        coefficients = None
        if "coefficients" in args and self.mode != "eigen":
            raise BadState("only an EigenGAN has subspace coefficients: this model takes none")
        if self.mode == "eigen":
            coefficients = self._coefficients_of(z_seed)
            if "coefficients" in args:
                coefficients = _floats(args["coefficients"], len(coefficients), COEFFICIENT_RANGE)
        if "noise" in args and self.mode != "noise":
            raise BadState("only a standard GAN (one block per bucket) shows noise injection: this model takes "
                           "no noise")
        noise = _float(args.get("noise", str(DEFAULT_NOISE)), "noise", 0.0, MAX_NOISE)
        return State(path, z_seed, coefficients, noise)

    def _z(self, state: State) -> Tensor | None:
        """z [1, latent_dim] of a state (None for a learned input); an EigenGAN's with its coefficients."""
        if state.z_seed is None:
            return None
        z = torch.randn(1, self.config.model.latent_dim, generator=torch.Generator().manual_seed(state.z_seed))
        if state.coefficients is not None:
            z[0, self.config.model.z_dim:] = torch.tensor(state.coefficients)
        return z

    def _coefficients_of(self, z_seed: int | None) -> tuple[float, ...] | None:
        """An EigenGAN's coefficients as drawn with z (rounded for the sliders), else None."""
        if self.mode != "eigen":
            return None
        z = self._z(State((0,) * len(self.blocks), z_seed))
        return tuple(round(float(v), 2) for v in z[0, self.config.model.z_dim:])

    # -- views -------------------------------------------------------------------------------

    def view(self, state: State) -> dict:
        """The state's image and one row per bucket, as PNG data URLs:
        {"state", "image", "rows": [{"bucket", "label", "clickable", "items": [{"block"|"draw", "image"}]}],
        "cached_rows"}; rows already rendered come from the cache."""
        with self._lock:
            keys = [self._row_key(state, i) for i in range(len(self.blocks))]
            missing = [i for i, k in enumerate(keys) if k not in self._rows]
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            if missing:
                for i, row in zip(missing, self._render_rows(state, missing)):
                    self._rows[keys[i]] = row
            for k in keys:
                self._rows.move_to_end(k)
            rows = [self._rows[k] for k in keys]
            while len(self._rows) > CACHED_ROWS:
                self._rows.popitem(last=False)
            image = rows[0][state.path[0]] if self.mode == "paths" else self._image(state)
        out = []
        for i, row in enumerate(rows):
            name = "block" if self.mode == "paths" else "draw"
            out.append({"bucket": i + 1, "label": self._label(i), "clickable": self.mode == "paths",
                        "items": [{name: k, "image": url} for k, url in enumerate(row)]})
        return {"state": state.as_json(), "image": image, "rows": out, "cached_rows": len(keys) - len(missing)}

    def _label(self, i: int) -> str:
        if self.mode == "paths":
            return f"bucket {i + 1}: its {self.blocks[i]} blocks"
        what = "weights + noise" if self.mode == "noise" else "z_l redrawn"
        return f"layer {i + 1}: {what}"

    def _row_key(self, state: State, i: int) -> tuple:
        if self.mode == "paths":  # the row of bucket i does not depend on its own block
            return ("paths", i, state.path[:i] + (-1,) + state.path[i + 1:], state.z_seed)
        return (self.mode, i, state.z_seed, state.coefficients, state.noise if self.mode == "noise" else None)

    def _image(self, state: State) -> str:
        return _png(to_uint8(render(self.generator, torch.tensor([state.path]), self._z(state)))[0])

    def _render_rows(self, state: State, buckets: list[int]) -> list[list[str]]:
        """Rows of `buckets` for `state`, rendered together: list (per bucket) of PNG data URLs."""
        z = self._z(state)
        if self.mode == "paths":
            path = torch.tensor(state.path)
            paths = torch.cat([frozen_path_variations(path, i, torch.arange(self.blocks[i])) for i in buckets])
            zs = None if z is None else z.expand(len(paths), -1)
            images = to_uint8(render(self.generator, paths, zs))
            rows, start = [], 0
            for i in buckets:
                rows.append([_png(im) for im in images[start:start + self.blocks[i]]])
                start += self.blocks[i]
            return rows
        return [[_png(im) for im in self._layer_draws(state, z)[i]] for i in buckets]

    def _layer_draws(self, state: State, z: Tensor | None) -> Tensor:
        """uint8 [L, ROW_DRAWS, C, S, S]: every layer varied by fixed draws (noise or z_l)."""
        n = len(self.blocks)
        seeds = torch.tensor([[_seed(self.seed, i, k) % 2**62 for k in range(ROW_DRAWS)] for i in range(n)])
        draws = Draws(torch.tensor([state.path]), z, torch.zeros(1, n, ROW_DRAWS, dtype=torch.long), seeds[None])
        vary: Callable = noise_variations if self.mode == "noise" else eigen_variations
        args = (state.noise,) if self.mode == "noise" else ()
        return vary(self.generator, draws, *args)[0]


def _integer(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadState(f"{name} must be an integer, got {text!r}") from None
    if not low <= value < high:
        raise BadState(f"{name} must be in {low}..{high - 1}, got {value}")
    return value


def _float(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadState(f"{name} must be a number, got {text!r}") from None
    if not low <= value <= high:  # also refuses nan
        raise BadState(f"{name} must be in [{low:g}, {high:g}], got {text}")
    return value


def _floats(text: str, count: int, bound: float) -> tuple[float, ...]:
    parts = text.split(",")
    if len(parts) != count:
        raise BadState(f"coefficients needs {count} numbers (eigen_dims per layer, layer by layer), got {len(parts)}")
    return tuple(_float(p, "each coefficient", -bound, bound) for p in parts)
