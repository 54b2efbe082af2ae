"""Bucket compression of a purely linear fully-connected generator (paper section 4.4).

Consecutive linear buckets B_a..B_b are replaced by one bucket whose K blocks are the
products B_b[s_b] o ... o B_a[s_a] for K random tuples (s_a..s_b): one matrix multiply
instead of b - a + 1. Eval-mode BatchNorm is affine, so it is folded into the products.
"""

from __future__ import annotations

import dataclasses

from rpgan.config import MAX_BLOCKS
from rpgan.errors import UserError
from rpgan.model.networks import DenseBucket, Generator
from rpgan.model.paths import sample_paths

import torch
from torch import Tensor


def block_affine(bucket: DenseBucket, b: int) -> tuple[Tensor, Tensor]:
    """Block b of a linear dense bucket as y = W x + c, BatchNorm (running statistics)
    folded in. Returns W [out, in], c [out], in float64."""
    w, c = bucket.fc.weight[b].double(), bucket.fc.bias[b].double()
    if bucket.norm is not None:
        n = bucket.norm
        scale = n.weight[b].double() / torch.sqrt(n.running_var.double() + n.eps)
        w, c = scale[:, None] * w, scale * (c - n.running_mean.double()) + n.bias[b].double()
    return w, c


def merge_buckets(generator: Generator, first: int, last: int, k: int,
                  rng: torch.Generator) -> tuple[Generator, Tensor]:
    """Merge buckets first..last (0-based, inclusive) into one bucket of k product blocks.

    Returns the compressed generator (eval mode) and the tuples it was built from,
    LongTensor [k, last - first + 1]: merged block j = product of original blocks tuples[j].
    """
    cfg = generator.cfg
    if cfg.arch != "fc":
        raise UserError(f"compression merges fully-connected buckets; this generator is {cfg.arch}")
    if not cfg.linear:
        raise UserError("these buckets have ReLUs (trained without --linear); only linear buckets can be merged")
    if not 0 <= first < last < cfg.n_buckets:
        raise UserError(f"--merge needs two or more consecutive buckets within 1-{cfg.n_buckets}, "
                        f"got {first + 1}-{last + 1}")
    if not 1 <= k <= MAX_BLOCKS:  # before drawing k tuples: a typo must not allocate gigabytes
        raise UserError(f"--merged-blocks must be 1..{MAX_BLOCKS}, got {k}")
    span = last - first
    tuples = sample_paths(cfg.blocks[first : last + 1], k, rng)
    dims = [cfg.z_dim, *cfg.fc_widths, cfg.channels * cfg.image_size**2]
    dims = dims[: first + 1] + dims[last + 1 :]
    plain = {i if i < first else i - span for i in cfg.plain_buckets if not first <= i <= last} | {first}
    new_cfg = dataclasses.replace(cfg, blocks=cfg.blocks[:first] + (k,) + cfg.blocks[last + 1 :],
                                  fc_widths=tuple(dims[1:-1]), plain_buckets=tuple(sorted(plain)))
    compressed = Generator(new_cfg)
    old = list(generator.buckets)
    kept = old[:first] + [None] + old[last + 1 :]
    with torch.no_grad():
        for new_bucket, old_bucket in zip(compressed.buckets, kept):
            if old_bucket is not None:
                new_bucket.load_state_dict(old_bucket.state_dict())
        if cfg.input != "gaussian":
            compressed.z.copy_(generator.z)
        merged = compressed.buckets[first]
        for j, picks in enumerate(tuples.tolist()):
            w = torch.eye(dims[first], dtype=torch.float64)
            c = torch.zeros(dims[first], dtype=torch.float64)
            for bucket, b in zip(old[first : last + 1], picks):
                wb, cb = block_affine(bucket, b)
                w, c = wb @ w, wb @ c + cb
            merged.fc.weight[j] = w.float()
            merged.fc.bias[j] = c.float()
    return compressed.eval(), tuples


def parse_merge(text: str) -> tuple[int, int]:
    """`"3-5"` (1-based buckets, as in the paper) -> (2, 4) (0-based)."""
    try:
        a, b = (int(v) for v in text.split("-"))
    except ValueError:
        raise UserError(f"--merge takes a bucket range like 3-5, got {text!r}") from None
    return a - 1, b - 1
