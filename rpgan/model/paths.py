"""Random paths: RPGAN's latent space.

A path batch is a LongTensor [N, n_buckets]; entry (k, i) is the 0-based block that sample k
uses in bucket i. Sampling is separate from the generator so that the same seed gives the
same paths whatever the device or routing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rpgan.errors import UserError

import torch


def sample_paths(blocks: Sequence[int], n: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform random paths. Returns LongTensor [n, len(blocks)] on the CPU."""
    cols = [torch.randint(m, (n,), generator=generator) for m in blocks]
    return torch.stack(cols, dim=1)


def frozen_path_variations(path: torch.Tensor, bucket: int, block_ids: torch.Tensor) -> torch.Tensor:
    """The paper's frozen path with one bucket unfrozen.

    path: LongTensor [n_buckets]; block_ids: LongTensor [K].
    Returns [K, n_buckets]: copies of `path` whose entry `bucket` runs over `block_ids`.
    """
    paths = path.unsqueeze(0).repeat(len(block_ids), 1)
    paths[:, bucket] = block_ids
    return paths


def parse_path(text: str, blocks: Sequence[int]) -> torch.Tensor:
    """`"3,0,17,5"` -> LongTensor [n_buckets], checked against the blocks per bucket."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--path takes comma-separated block indices like 3,0,7,1, got {text!r}") from None
    if len(values) != len(blocks):
        raise UserError(f"--path needs {len(blocks)} block indices (one per bucket), got {len(values)}")
    for i, (s, m) in enumerate(zip(values, blocks)):
        if not 0 <= s < m:
            raise UserError(f"--path: bucket {i + 1} has blocks 0..{m - 1}, got {s}")
    return torch.tensor(values)


def cardinality(blocks: Sequence[int]) -> int:
    """Number of distinct paths, prod(m_i): the latent-space cardinality of Table 1."""
    return math.prod(blocks)
