"""Image distances for layer responsibility (paper section 4.1) and the D_{l->1} ratio.

Images are uint8 [N, C, H, W]; gray images count as R = G = B.
"""

from __future__ import annotations

import torch
from torch import Tensor

BINS = 25  # the paper: 25 equal segments of 0..255 per channel
CHANNELS = ("r", "g", "b")


def color_histograms(images: Tensor) -> Tensor:
    """uint8 [N, C, H, W] -> per-channel pixel-intensity distributions [N, 3, 25] (rows sum to 1)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    bins = (images.long() * BINS) // 256  # 0..255 -> 0..24, equal segments
    flat = bins.flatten(2)
    counts = torch.zeros(*flat.shape[:2], BINS, dtype=torch.float64).scatter_add_(
        2, flat, torch.ones_like(flat, dtype=torch.float64))
    return counts / flat.shape[2]


def hellinger(p: Tensor, q: Tensor) -> Tensor:
    """Hellinger distance 1/sqrt(2) * ||sqrt(p) - sqrt(q)||_2 over the last dimension."""
    return (p.sqrt() - q.sqrt()).pow(2).sum(-1).sqrt() / 2**0.5


def mean_pairwise(distance: Tensor) -> Tensor:
    """Mean over i != j of a pairwise distance matrix [..., K, K] -> [...].

    The paper sums over i != j with K = 4 images; the mean is that sum / 12 and keeps the ratio
    comparable when a bucket holds fewer than 4 blocks."""
    k = distance.shape[-1]
    if k < 2:
        return torch.zeros(distance.shape[:-2], dtype=distance.dtype)
    return distance.sum((-1, -2)) / (k * (k - 1))


def semantic_spread(features: Tensor) -> Tensor:
    """Inception features [..., K, 2048] -> mean pairwise Euclidean distance [...]."""
    return mean_pairwise(torch.cdist(features.double(), features.double()))


def color_spread(histograms: Tensor) -> Tensor:
    """Histograms [..., K, 3, 25] -> mean pairwise Hellinger distance per channel [..., 3]."""
    h = histograms.movedim(-2, -3)  # [..., 3, K, 25]
    return mean_pairwise(hellinger(h.unsqueeze(-2), h.unsqueeze(-3)))


def ratio_to_first(spread: Tensor) -> Tensor:
    """D_{l->1}: spreads [E, L] (evaluation x layer) divided by layer 1's, per evaluation.
    Layer 1's ratio is exactly 1; where layer 1 has no spread the ratio is NaN (undefined)."""
    first = spread[:, :1]
    return torch.where(first > 0, spread / first.clamp_min(1e-300), torch.full_like(spread, float("nan")))
