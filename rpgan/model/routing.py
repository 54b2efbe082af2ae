"""Batched random routing: a bucket's m blocks stored as stacked weights [m, ...].

Every parameter of a bucket has a leading block dimension, so block b of the bucket is the
slice [b] of each of them. A batch reaches its blocks in one of three ways, all exact:

- "group":  the bucket sorts its batch by block index once; each layer runs one call per
            used block on that contiguous chunk (a loop over blocks, never over samples).
- "gather": each layer gathers a per-sample weight tensor and runs one grouped call.
- "loop":   one call per sample: the reference router (the public code's scheme), kept to
            test against and to benchmark.

BatchNorm inside blocks normalises with statistics of the whole batch (shared by the bucket)
and applies a per-block scale and shift, as class-conditional BatchNorm does for classes:
so training does not depend on how many samples happen to share a block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Route:
    """Which block each sample of a batch uses in one bucket.

    index: LongTensor [N]. In "group" mode the batch is sorted by it and `counts[b]` is the
    number of samples that use block b.
    """

    index: Tensor
    mode: str
    counts: list[int] | None = None


class Bucket(nn.Module):
    """Base class: m interchangeable blocks. Subclasses implement `blocks_forward`."""

    def __init__(self, n_blocks: int):
        super().__init__()
        self.n_blocks = n_blocks

    def blocks_forward(self, x: Tensor, route: Route) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, index: Tensor, mode: str = "group", counts: list[int] | None = None) -> Tensor:
        """x: [N, ...] batch; index: LongTensor [N] block per sample. Returns [N, ...]. `counts`:
        samples per block (group mode), if known on the host; else read back from `index`."""
        if mode != "group":
            return self.blocks_forward(x, Route(index, mode))
        order = torch.argsort(index, stable=True)
        if counts is None:
            counts = torch.bincount(index, minlength=self.n_blocks).tolist()
        y = self.blocks_forward(x[order], Route(index[order], mode, counts))
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return y[inverse]


def _per_block(fn: Callable, x: Tensor, weight: Tensor, bias: Tensor, route: Route) -> Tensor:
    """Run fn(x_part, weight[b], bias[b]) per used block ("group") or per sample ("loop")."""
    # unbind once: indexing weight[b] per block would make every backward write a full
    # zero-filled [m, ...] gradient, O(m^2) memory traffic per layer.
    ws, bs = weight.unbind(0), bias.unbind(0)
    if route.mode == "group":
        chunks = x.split(route.counts)
        outs = [fn(c, ws[b], bs[b]) for b, c in enumerate(chunks) if len(c)]
    else:
        outs = [fn(x[k : k + 1], ws[b], bs[b]) for k, b in enumerate(route.index.tolist())]
    return torch.cat(outs)


class RoutedLinear(nn.Module):
    """m independent linear layers: weight [m, out, in], bias [m, out]."""

    def __init__(self, m: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(m, d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(m, d_out))
        for w in self.weight.data:
            nn.init.xavier_uniform_(w)

    def forward(self, x: Tensor, route: Route) -> Tensor:
        """x: [N, in] -> [N, out]."""
        if route.mode == "gather":
            w, b = self.weight[route.index], self.bias[route.index]
            return torch.baddbmm(b.unsqueeze(1), x.unsqueeze(1), w.transpose(1, 2)).squeeze(1)
        return _per_block(_linear_weight_first, x, self.weight, self.bias, route)


def _linear_weight_first(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """F.linear computed as (W x^T + b)^T. A block sees only the few rows routed to it; with
    the weight as GEMM's first operand, CPU BLAS (by our reading of the timings) no longer
    repacks it on every call: the Table 3 generator runs 1.45x faster at batch 64
    (bench/compression.py, docs/benchmarks.md)."""
    return torch.addmm(bias[:, None], weight, x.T).T


class RoutedConv2d(nn.Module):
    """m independent (transposed) convolutions: weight [m, out, in, k, k] ([m, in, out, k, k]
    when transposed, PyTorch's layouts), bias [m, out]."""

    def __init__(self, m: int, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
                 transposed: bool = False):
        super().__init__()
        shape = (c_in, c_out) if transposed else (c_out, c_in)
        self.weight = nn.Parameter(torch.empty(m, *shape, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(m, c_out))
        for w in self.weight.data:
            nn.init.xavier_uniform_(w)
        conv = F.conv_transpose2d if transposed else F.conv2d
        self.conv = partial(conv, stride=stride, padding=padding)

    def forward(self, x: Tensor, route: Route) -> Tensor:
        """x: [N, in, H, W] -> [N, out, H', W']."""
        if route.mode == "gather":
            # One grouped convolution: sample k is group k with its own gathered weight.
            n = x.shape[0]
            w = self.weight[route.index].flatten(0, 1)
            y = self.conv(x.reshape(1, -1, *x.shape[2:]), w, self.bias[route.index].flatten(), groups=n)
            return y.view(n, -1, *y.shape[2:])
        return _per_block(self.conv, x, self.weight, self.bias, route)


class RoutedBatchNorm(nn.Module):
    """BatchNorm over the whole batch with a per-block scale and shift: weight, bias [m, C]."""

    def __init__(self, m: int, c: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(m, c))
        self.bias = nn.Parameter(torch.zeros(m, c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: Tensor, route: Route) -> Tensor:
        """x: [N, C] or [N, C, H, W] -> same shape."""
        x = F.batch_norm(x, self.running_mean, self.running_var, None, None, self.training,
                         self.momentum, self.eps)
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
        return x * self.weight[route.index].view(shape) + self.bias[route.index].view(shape)
