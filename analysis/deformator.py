"""Unsupervised latent directions (Voynov & Babenko, ICML 2020) for the models this project trains.

A deformator holds K orthonormal directions in the input space of one bucket (QR of a free
matrix, so they stay orthonormal whatever the optimiser does): for a standard GAN with a
Gaussian input, bucket 1's input is z itself; for an RPGAN it is the feature entering bucket b,
with the path held fixed. A reconstructor (a small CNN) sees an image and the same image with
its input shifted by eps along direction k, and predicts k and eps. Both learn together, the
generator frozen: loss = cross-entropy(k) + 0.25 * |eps_hat - eps|. Directions the
reconstructor can tell apart are ones that change the image in distinct ways.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from analysis.limits import MAX_BATCH, MAX_DIRECTION_STEPS, MAX_DIRECTIONS
from rpgan.errors import UserError
from rpgan.io.progress import Progress
from rpgan.model.networks import Generator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SHIFT_WEIGHT = 0.25  # the paper's weight of the shift regression term


@dataclass(frozen=True)
class DirectionsConfig:
    bucket: int = 1  # directions live in the input of this bucket (1: z, or RPGAN's learned Z)
    directions: int = 10  # K
    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3  # the paper: 1e-4 over ~10^5 steps; 1e-3 learns in the 10^3 steps a CPU affords
    max_shift: float = 6.0  # shifts eps are drawn from [-6, 6] ...
    min_shift: float = 0.5  # ... with |eps| >= 0.5
    seed: int = 0

    def validate(self, n_buckets: int) -> DirectionsConfig:
        """Itself, if it suits a generator of n_buckets buckets; else UserError."""
        if not 1 <= self.bucket <= n_buckets:
            raise UserError(f"--bucket must be 1..{n_buckets} (the checkpoint's buckets), got {self.bucket}")
        if self.directions < 2 or self.steps < 1 or self.batch < 1 or not 0 < self.lr < math.inf:
            raise UserError("--directions must be >= 2, --steps and --batch >= 1, --lr positive")
        if self.directions > MAX_DIRECTIONS or self.steps > MAX_DIRECTION_STEPS or self.batch > MAX_BATCH:
            raise UserError(f"--directions go up to {MAX_DIRECTIONS}, --steps to {MAX_DIRECTION_STEPS}, "
                            f"--batch to {MAX_BATCH}")
        if not 0 <= self.min_shift < self.max_shift < math.inf:
            raise UserError("--min-shift must be >= 0 and below --max-shift, which must be finite")
        return self


class Deformator(nn.Module):
    """K orthonormal directions [D, K] of a D-dimensional input space."""

    def __init__(self, dim: int, k: int, scale: float = 1.0):
        super().__init__()
        if k > dim:
            raise UserError(f"{k} orthonormal directions do not fit a {dim}-dimensional input; lower --directions")
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(dim, k))[0])
        self.scale = scale  # a shift eps moves the input by eps * scale along a direction

    def directions(self) -> Tensor:
        q, r = torch.linalg.qr(self.weight)
        return q * torch.sign(torch.diagonal(r))  # the sign fix makes the map continuous

    def shift(self, index: Tensor, eps: Tensor) -> Tensor:
        """Input shifts [N, D]: eps [N] along directions index [N]."""
        return self.directions()[:, index].T * (eps * self.scale)[:, None]


class Reconstructor(nn.Module):
    """Image pairs [N, C, S, S] x 2 -> direction logits [N, K] and shift [N]."""

    def __init__(self, channels: int, k: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2 * channels, width, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.direction = nn.Linear(4 * width, k)
        self.shift = nn.Linear(4 * width, 1)

    def forward(self, x: Tensor, shifted: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(torch.cat([x, shifted], 1))
        return self.direction(h), self.shift(h).squeeze(1)


@contextmanager
def shifted_input(generator: Generator, bucket: int, shift: Tensor) -> Iterator[None]:
    """Within the block, the input of `bucket` (1-based) gets shift [N, D] added (D = its size per sample)."""

    def hook(module, args):
        x = args[0]
        return (x + shift.to(x).view_as(x), *args[1:])

    handle = generator.buckets[bucket - 1].register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def input_scale(generator: Generator, bucket: int) -> tuple[int, float]:
    """D, the size per sample of the input of `bucket`, and the std of its entries over 64
    random latents: shifts are in units of that std, so +-6 means for an intermediate feature
    what it means for a standard normal z (whose std is 1)."""
    seen = []
    handle = generator.buckets[bucket - 1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            generator.eval()(*generator.sample_latent(64, torch.Generator().manual_seed(0)))
    finally:
        handle.remove()
    return seen[0][0].numel(), float(seen[0].std())


def draw_shifts(n: int, k: int, cfg: DirectionsConfig, rng: torch.Generator) -> tuple[Tensor, Tensor]:
    """Directions [n] uniform over K, and shifts [n] uniform with min_shift <= |eps| <= max_shift."""
    index = torch.randint(0, k, (n,), generator=rng)
    size = cfg.min_shift + (cfg.max_shift - cfg.min_shift) * torch.rand(n, generator=rng)
    sign = torch.where(torch.rand(n, generator=rng) < 0.5, -1.0, 1.0)
    return index, sign * size


def pair(generator: Generator, deformator: Deformator, bucket: int, n: int, index: Tensor, eps: Tensor,
         rng: torch.Generator) -> tuple[Tensor, Tensor]:
    """n images [n, C, S, S] of random latents (paths, z) and the same latents with bucket's
    input shifted by eps along direction index."""
    paths, z = generator.sample_latent(n, rng)
    shift = deformator.shift(index, eps)
    with torch.no_grad():
        x = generator(paths, z)
    with shifted_input(generator, bucket, shift):
        return x, generator(paths, z)


def train_directions(generator: Generator, cfg: DirectionsConfig, quiet: bool = False
                     ) -> tuple[Deformator, Reconstructor, list[dict]]:
    """Train a deformator and a reconstructor on the frozen generator, on its device; returns
    them and the loss history (one row per 50 steps: step, loss, accuracy of the batch)."""
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on any device
    generator.eval().requires_grad_(False)
    device = next(generator.parameters()).device
    dim, scale = input_scale(generator, cfg.bucket)
    deformator = Deformator(dim, cfg.directions, scale).to(device)
    reconstructor = Reconstructor(generator.cfg.channels, cfg.directions).to(device)
    opt = torch.optim.Adam([*deformator.parameters(), *reconstructor.parameters()], lr=cfg.lr)
    progress, history = Progress(cfg.steps, label="direction step", every=50), []
    for step in range(1, cfg.steps + 1):
        index, eps = (t.to(device) for t in draw_shifts(cfg.batch, cfg.directions, cfg, rng))
        x, shifted = pair(generator, deformator, cfg.bucket, cfg.batch, index, eps, rng)
        logits, eps_hat = reconstructor(x, shifted)
        loss = F.cross_entropy(logits, index) + SHIFT_WEIGHT * (eps_hat - eps).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg.steps:
            right = (logits.argmax(1) == index).float().mean()
            history.append({"step": step, "loss": loss.item(), "accuracy": right.item()})
            if not quiet:
                progress.update(step, {"loss": history[-1]["loss"], "accuracy": history[-1]["accuracy"]})
    progress.close()
    return deformator, reconstructor.eval(), history


@torch.no_grad()
def accuracy(generator: Generator, deformator: Deformator, reconstructor: Reconstructor, cfg: DirectionsConfig,
             n: int, seed: int) -> Tensor:
    """Per direction, the share of n fresh pairs whose direction the reconstructor names: [K]."""
    rng = torch.Generator().manual_seed(seed)
    device = next(reconstructor.parameters()).device
    index, eps = (t.to(device) for t in draw_shifts(n, cfg.directions, cfg, rng))
    x, shifted = pair(generator, deformator, cfg.bucket, n, index, eps, rng)
    right = (reconstructor(x, shifted)[0].argmax(1) == index).float()
    return torch.stack([right[index == k].mean() for k in range(cfg.directions)])


@torch.no_grad()
def traversals(generator: Generator, deformator: Deformator, bucket: int, paths: Tensor, z: Tensor | None,
               shifts: Tensor) -> Tensor:
    """Images [K, B, T, C, S, S] in [-1, 1]: each of B latents shifted along each direction by
    each of T shifts."""
    generator.eval()
    out = []
    for k in range(deformator.weight.shape[1]):
        rows = []
        for eps in shifts.tolist():
            shift = deformator.shift(torch.full((len(paths),), k), torch.full((len(paths),), eps))
            with shifted_input(generator, bucket, shift):
                rows.append(generator(paths, z))
        out.append(torch.stack(rows, 1))
    return torch.stack(out)
