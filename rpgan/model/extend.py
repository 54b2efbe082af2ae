"""Incremental learning (paper section 4.3): add blocks to chosen buckets and train only them.

The new blocks are initialised like blocks of a new model (Xavier weights, zero biases,
BatchNorm scale 1 and shift 0). Every existing parameter stays bit-identical: gradients of
the old blocks' slices are masked to zero (Adam then moves them by exactly 0), the input Z
and shared layers do not train, and BatchNorm keeps its running statistics (it normalises
with them during training too), so every old path renders exactly as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rpgan.errors import UserError
from rpgan.model.networks import Generator

import torch


def add_blocks(generator: Generator, add: Sequence[int]) -> Generator:
    """A generator with add[i] new blocks appended to bucket i; the old blocks are copied."""
    cfg = generator.cfg
    if cfg.arch == "eigengan":
        raise UserError("incremental learning adds blocks to RPGAN buckets; an EigenGAN has none")
    if len(add) != cfg.n_buckets or any(a < 0 for a in add) or not any(add):
        raise UserError(f"--add-blocks needs {cfg.n_buckets} non-negative counts, not all 0, got {list(add)}")
    grown = Generator(dataclasses.replace(cfg, blocks=tuple(m + a for m, a in zip(cfg.blocks, add))))
    new_state = grown.state_dict()
    with torch.no_grad():
        for name, old in generator.state_dict().items():
            if old.dim():  # stacked block weights grow along dim 0; shared tensors keep their size
                new_state[name][: len(old)].copy_(old)
            else:
                new_state[name].copy_(old)
    return grown


def freeze_old_blocks(generator: Generator, frozen: Sequence[int]) -> None:
    """Train only blocks frozen[i].. of bucket i: mask old slices' gradients, freeze the rest."""
    for p in generator.parameters():
        p.requires_grad_(False)
    for bucket, n in zip(generator.buckets, frozen):
        if n >= bucket.n_blocks:
            continue
        for p in bucket.parameters():
            mask = torch.ones(bucket.n_blocks, *[1] * (p.dim() - 1), device=p.device)
            mask[:n] = 0
            p.requires_grad_(True)
            p.register_hook(lambda g, m=mask: g * m)
    generator.frozen_statistics = True
    generator.train(generator.training)
