"""Synchronous data parallelism for the train step, on plain torch.distributed (no Ray here).

Every worker holds a whole copy of G and D and draws its own random paths and real images for
its share of the global batch. After each backward the gradients are averaged over the workers,
weighted by batch share, in one flat all_reduce: every worker then holds the gradient of the
global batch and takes the same optimizer step, so the weights stay identical.

Why not torch's DistributedDataParallel wrapper: WGAN-GP's double backward (autograd.grad with
create_graph) is unsupported under DDP, and random routing leaves blocks without a gradient in a
step (DDP would need find_unused_parameters and still mistreat them). stylegan2-ada-pytorch syncs
gradients the same way. Buffers (BatchNorm running statistics, spectral-norm vectors) are
broadcast from rank 0 after each step, as DDP's broadcast_buffers does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel run. The default is a run on one process."""

    rank: int = 0
    world: int = 1

    def share(self, batch: int) -> int:
        """This worker's part of a global batch: parts differ by at most one and sum to `batch`."""
        return batch // self.world + (1 if self.rank < batch % self.world else 0)

    def average_gradients(self, module: nn.Module, batch: int) -> None:
        """Replace each trainable parameter's .grad by the global-batch gradient (weighted mean
        over workers). A parameter no worker used keeps grad None, as on one process."""
        if self.world == 1:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        device = params[0].device
        grads = [p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), device=device) for p in params]
        used = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=device)
        flat = torch.cat([torch.cat(grads) * (self.share(batch) / batch), used])
        dist.all_reduce(flat)
        offset = 0
        for p, was_used in zip(params, flat[-len(params):].tolist()):
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone() if was_used else None
            offset += p.numel()

    def mean(self, values: dict[str, float], batch: int, device: torch.device | str) -> dict[str, float]:
        """Batch-weighted mean over workers of per-worker scalars (losses of each share)."""
        if self.world == 1:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=device) * (self.share(batch) / batch)
        dist.all_reduce(t)
        return dict(zip(values, t.tolist()))

    def broadcast_buffers(self, *modules: nn.Module) -> None:
        """Every worker takes rank 0's buffers (BatchNorm statistics, spectral-norm vectors)."""
        if self.world == 1:
            return
        buffers = [b for m in modules for b in m.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.flatten() for b in buffers])
        dist.broadcast(flat, src=0)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()

    def check_in_sync(self, *modules: nn.Module) -> None:
        """Raise if any worker's parameters or buffers differ from rank 0's (bit for bit)."""
        if self.world == 1:
            return
        mine = fingerprint(*modules)
        everyone = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(everyone, mine)
        differ = [r for r, f in enumerate(everyone) if not torch.equal(f, everyone[0])]
        if differ:
            raise RuntimeError(f"workers {differ} hold other weights than rank 0: gradient sync is broken")


SOLO = Replica()


def fingerprint(*modules: nn.Module) -> torch.Tensor:
    """float64 [3] summarising every parameter and floating buffer: equal weights give equal
    fingerprints, and any single changed value changes it."""
    flat = torch.cat([t.detach().double().flatten() for m in modules for t in m.state_dict().values()
                      if t.is_floating_point()])
    ramp = torch.linspace(1.0, 2.0, len(flat), dtype=torch.float64, device=flat.device)
    return torch.stack([flat.sum(), (flat * flat).sum(), (flat * ramp).sum()])
