"""Unit dissection without a segmenter (after Bau et al., GAN Dissection): what a layer's most
active units do, measured by what ablating them does to the images.

A layer is the output of bucket l (1-based; the last bucket, which draws the RGB image, is
left out): its channels (or features, for a fully-connected bucket) are the units. A unit's
activation on a sample is its spatial mean. Ablating units replaces them by a fill value (0,
or their mean over samples) in every position, through a forward hook, and the causal effect
is the distance between each sample's image with and without the ablation: Euclidean between
Inception pool3 features ("semantic") and Hellinger between color histograms ("color"), the
distances of the layer-responsibility analysis. No segmentation network is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from analysis.distances import color_histograms, hellinger
from rpgan.io.data import to_uint8
from rpgan.io.images import render
from rpgan.model.networks import Generator

import torch
from torch import Tensor

Edit = Callable[[Tensor], Tensor]


def layers(generator: Generator) -> list[int]:
    """The dissected layers, those that output hidden features: RPGAN buckets 1..n-1 (bucket n
    draws the image), every EigenGAN layer (its image comes from a separate head)."""
    n = len(generator.buckets)
    return list(range(1, n + 1 if generator.cfg.arch == "eigengan" else n))


@contextmanager
def instrument(generator: Generator, layer: int, edit: Edit | None = None) -> Iterator[list[Tensor]]:
    """Within the block, every forward of bucket `layer` appends its output [N, units, ...] to
    the yielded list, after `edit` (if given) has replaced it; the replacement flows on."""
    retained: list[Tensor] = []

    def hook(module, args, output: Tensor) -> Tensor:
        out = edit(output) if edit is not None else output
        retained.append(out.detach())
        return out

    handle = generator.buckets[layer - 1].register_forward_hook(hook)
    try:
        yield retained
    finally:
        handle.remove()


def ablation(units: Tensor, fill: Tensor) -> Edit:
    """An edit that sets `units` (LongTensor [k]) of an output [N, U, ...] to fill[units]
    (fill: [U]) in every position."""

    def edit(x: Tensor) -> Tensor:
        x = x.clone()
        x[:, units] = fill[units].to(x).view(-1, *[1] * (x.dim() - 2))
        return x

    return edit


@torch.no_grad()
def unit_activations(generator: Generator, paths: Tensor, z: Tensor | None, layer: int) -> Tensor:
    """Activations [N, U] of the layer's units on the samples of paths [N, L]: spatial means."""
    with instrument(generator, layer) as kept:
        render(generator, paths, z)
    out = torch.cat(kept).cpu()
    return out.flatten(2).mean(2) if out.dim() > 2 else out


@torch.no_grad()
def ablation_effects(generator: Generator, paths: Tensor, z: Tensor | None, ablations: list[tuple[int, Edit]],
                     embed: Callable[[Tensor], Tensor]) -> Tensor:
    """Effects [A, N, 2] of each (layer, edit) ablation on each sample: semantic (Euclidean
    between features from `embed`, uint8 [N, C, S, S] -> [N, D]) and color (Hellinger between
    color histograms, mean over R, G, B) distance between the image without and with it."""
    original = to_uint8(render(generator, paths, z))
    feats, hists = embed(original).double(), color_histograms(original)
    out = []
    for layer, edit in ablations:
        with instrument(generator, layer, edit):
            ablated = to_uint8(render(generator, paths, z))
        semantic = (embed(ablated).double() - feats).norm(dim=1)
        color = hellinger(color_histograms(ablated), hists).mean(1)
        out.append(torch.stack([semantic, color], 1))
    return torch.stack(out)
