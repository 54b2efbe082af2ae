"""Layer responsibility, the paper's D_{l->1} (section 4.1), for RPGAN buckets, for noise
injection into a standard GAN's layers (section 4.2, Figure 5), and for EigenGAN layers.

One evaluation: a random base path (and z for a Gaussian-input generator); for each layer l,
K = 4 images that differ only in layer l: other blocks of bucket l ("buckets"), 4 independent
noise draws on layer l's weights ("noise"), or 4 independent draws of an EigenGAN layer's
subspace coefficients z_l ("eigen"). Its spreads are mean pairwise distances of those K
images; the ratio divides by layer 1's. Everything random is drawn up front from the seed into a `Draws`, so the
numbers do not depend on how evaluations are split across workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.distances import CHANNELS, color_histograms, color_spread, ratio_to_first, semantic_spread
from rpgan.io.data import to_uint8
from rpgan.io.images import render, save_labeled_rows
from rpgan.model.eigengan import EigenGenerator
from rpgan.model.networks import Generator
from rpgan.model.paths import frozen_path_variations, sample_paths

import torch
from torch import Tensor

IMAGES_PER_LAYER = 4  # the paper's four images per bucket


@dataclass(frozen=True)
class Draws:
    """The random choices of evaluations; index [e] for evaluation e."""

    base_paths: Tensor  # Long [E, L]
    z: Tensor | None  # [E, latent_dim] for a Gaussian-input generator
    blocks: Tensor  # Long [E, L, K]: block of each varied image (bucket variation)
    noise_seeds: Tensor  # Long [E, L, K]: seed of each noise draw (noise injection, EigenGAN z_l)

    def __len__(self) -> int:
        return len(self.base_paths)

    def chunk(self, start: int, stop: int) -> Draws:
        return Draws(self.base_paths[start:stop], None if self.z is None else self.z[start:stop],
                     self.blocks[start:stop], self.noise_seeds[start:stop])


def draw(generator: Generator, evaluations: int, seed: int) -> Draws:
    """Base paths, varied blocks (distinct within a bucket; all of them when a bucket has fewer
    than 4) and noise seeds for `evaluations` evaluations, all drawn from `seed`."""
    rng = torch.Generator().manual_seed(seed)
    blocks = generator.blocks
    base = sample_paths(blocks, evaluations, rng)
    z = torch.randn(evaluations, generator.cfg.latent_dim, generator=rng) if generator.cfg.input == "gaussian" else None
    k = IMAGES_PER_LAYER
    chosen = torch.zeros(evaluations, len(blocks), k, dtype=torch.long)
    for e in range(evaluations):
        for i, m in enumerate(blocks):
            # a bucket of m < K blocks shows all m; the rest repeat and are left out of its spread
            chosen[e, i] = torch.randperm(m, generator=rng)[:k] if m >= k else torch.arange(k) % m
    seeds = torch.randint(0, 2**62, (evaluations, len(blocks), k), generator=rng)
    return Draws(base, z, chosen, seeds)


@torch.no_grad()
def bucket_variations(generator: Generator, draws: Draws) -> Tensor:
    """Images [E, L, K, C, S, S] (uint8): evaluation e, bucket l, its k-th chosen block."""
    n_eval, n_layers, k = draws.blocks.shape
    paths = torch.cat([frozen_path_variations(draws.base_paths[e], i, draws.blocks[e, i])
                       for e in range(n_eval) for i in range(n_layers)])
    z = None if draws.z is None else draws.z.repeat_interleave(n_layers * k, dim=0)
    images = to_uint8(render(generator, paths, z))
    return images.view(n_eval, n_layers, k, *images.shape[1:])


@torch.no_grad()
def noise_variations(generator: Generator, draws: Draws, scale: float) -> Tensor:
    """Images [E, L, K, C, S, S] (uint8): the base path rendered by the generator with layer l's
    weights perturbed, W + scale * std(W) * N(0, 1) per block, one fresh draw per image.
    Only weight matrices and kernels are perturbed, not biases or normalisation parameters."""
    n_eval, n_layers, k = draws.noise_seeds.shape
    out = []
    for e in range(n_eval):
        z = None if draws.z is None else draws.z[e : e + 1]
        for i, bucket in enumerate(generator.buckets):
            weights = [p for p in bucket.parameters() if p.dim() >= 3]  # stacked [m, out, in, ...]
            originals = [w.detach().clone() for w in weights]
            for j in range(k):
                rng = torch.Generator().manual_seed(int(draws.noise_seeds[e, i, j]))
                for w, w0 in zip(weights, originals):
                    std = w0.flatten(1).std(dim=1).view(-1, *[1] * (w0.dim() - 1))
                    noise = torch.randn(w0.shape, generator=rng).to(w0.device)
                    w.copy_(w0 + scale * std * noise)
                out.append(render(generator, draws.base_paths[e : e + 1], z))
            for w, w0 in zip(weights, originals):
                w.copy_(w0)
    images = to_uint8(torch.cat(out))
    return images.view(n_eval, n_layers, k, *images.shape[1:])


def save_noise_grid(generator: Generator, path: Tensor, z: Tensor | None, scale: float, out: Path,
                    per_layer: int = 10, seed: int = 0) -> Path:
    """Figure 5 for one sample (path [n_buckets], z [latent_dim] or None): the base image, then
    one row per layer of `per_layer` images, each with that layer's weights perturbed by a fresh
    draw of `noise_variations` at `scale` (draws from `seed`)."""
    rng = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, 2**62, (1, len(generator.blocks), per_layer), generator=rng)
    draws = Draws(path.unsqueeze(0), None if z is None else z.unsqueeze(0), torch.zeros_like(seeds), seeds)
    images = noise_variations(generator, draws, scale)[0].float() / 127.5 - 1  # [L, K, C, S, S] back in [-1, 1]
    base = render(generator, path.unsqueeze(0), None if z is None else z.unsqueeze(0))
    rows = [("base", base)] + [(f"layer {i + 1}", images[i]) for i in range(len(images))]
    return save_labeled_rows(rows, out)


@torch.no_grad()
def eigen_variations(generator: EigenGenerator, draws: Draws) -> Tensor:
    """Images [E, L, K, C, S, S] (uint8): evaluation e's z with layer l's coefficients z_l
    replaced by the k-th fresh draw from N(0, I); everything else fixed."""
    n_eval, n_layers, k = draws.noise_seeds.shape
    z = draws.z.repeat_interleave(n_layers * k, dim=0).view(n_eval, n_layers, k, -1).clone()
    for e in range(n_eval):
        for i in range(n_layers):
            cols = generator.coefficients(i + 1)
            for j in range(k):
                rng = torch.Generator().manual_seed(int(draws.noise_seeds[e, i, j]))
                z[e, i, j, cols] = torch.randn(cols.stop - cols.start, generator=rng)
    paths = draws.base_paths.repeat_interleave(n_layers * k, dim=0)
    images = to_uint8(render(generator, paths, z.flatten(0, 2)))
    return images.view(n_eval, n_layers, k, *images.shape[1:])


def variations(generator: Generator | EigenGenerator, draws: Draws, mode: str, noise_scale: float = 0.0) -> Tensor:
    """Images [E, L, K, C, S, S] (uint8) varying each layer the way `mode` says: "buckets",
    "noise" (at `noise_scale`) or "eigen"."""
    if mode == "noise":
        return noise_variations(generator, draws, noise_scale)
    if mode == "eigen":
        return eigen_variations(generator, draws)
    return bucket_variations(generator, draws)


def distinct_images(blocks: tuple[int, ...], mode: str) -> list[int]:
    """How many of a layer's K images differ by construction: min(m, K) blocks, or K draws."""
    return [min(m, IMAGES_PER_LAYER) if mode == "buckets" else IMAGES_PER_LAYER for m in blocks]


def spreads(images: Tensor, embed: Callable[[Tensor], Tensor], distinct: list[int]) -> dict[str, Tensor]:
    """Spreads [E, L] per distance for images [E, L, K, C, S, S], of the first distinct[l] images
    of layer l: "semantic" (Euclidean between Inception pool3 features, `embed`: uint8
    [N, C, S, S] -> [N, 2048]), "color_r/g/b" (Hellinger) and "color" (their mean)."""
    n_eval, n_layers, k = images.shape[:3]
    flat = images.flatten(0, 2)
    feats = embed(flat).view(n_eval, n_layers, k, -1)
    hists = color_histograms(flat).view(n_eval, n_layers, k, 3, -1)
    semantic = torch.stack([semantic_spread(feats[:, i, : distinct[i]]) for i in range(n_layers)], 1)
    color = torch.stack([color_spread(hists[:, i, : distinct[i]]) for i in range(n_layers)], 1)  # [E, L, 3]
    out = {"semantic": semantic}
    out.update({f"color_{c}": color[..., i] for i, c in enumerate(CHANNELS)})
    out["color"] = color.mean(-1)
    return out


def evaluation_rows(images: Tensor, embed: Callable[[Tensor], Tensor], distinct: list[int],
                    first_evaluation: int) -> list[dict]:
    """Long-format rows, one per evaluation x layer x distance: spread and D_{l->1} ratio."""
    rows = []
    for distance, spread in spreads(images, embed, distinct).items():
        ratio = ratio_to_first(spread)
        for e in range(spread.shape[0]):
            for layer in range(spread.shape[1]):
                rows.append({"evaluation": first_evaluation + e, "layer": layer + 1, "distance": distance,
                             "spread": float(spread[e, layer]), "ratio": float(ratio[e, layer])})
    return rows
