"""GAN losses and the block diversity loss, as plain functions on tensors."""

from __future__ import annotations

from collections.abc import Callable

from rpgan.model.routing import Bucket

import torch
from torch import Tensor, nn


def d_loss(kind: str, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss (without the gradient penalty). Logits: [N] each."""
    if kind == "hinge":
        return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()  # wgan-gp


def g_loss(fake_logits: Tensor) -> Tensor:
    """Generator adversarial loss, the same for hinge and WGAN. fake_logits: [N]."""
    return -fake_logits.mean()


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator) -> Tensor:
    """WGAN-GP (Gulrajani 2017): E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates.
    real, fake: [N, C, H, W]; the interpolation weights come from `generator` (CPU)."""
    eps = torch.rand(len(real), 1, 1, 1, generator=generator).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def diversity_term(w: Tensor) -> Tensor:
    """The paper's block diversity loss for one parameter with m instances w: [m, ...]:

        -sum_{i != j} MSE(w_i / s_w, w_j / s_w),   s_w = std of all elements of w

    computed in O(m) with sum_{i != j} ||a_i - a_j||^2 = 2m sum_i ||a_i - mean(a)||^2.
    s_w is part of the formula (not detached), so the term is bounded: it is -2m^2 times the
    share of the parameter's variance that lies between blocks. Returns a scalar; 0 for m = 1.
    """
    m = w.shape[0]
    if m < 2:
        return w.new_zeros(())
    flat = w.reshape(m, -1)
    spread = ((flat - flat.mean(dim=0)) ** 2).sum()
    var = flat.var(unbiased=False) + 1e-12  # identical blocks (e.g. zero biases at init): 0, not NaN
    return -2 * m * spread / (flat.shape[1] * var)


def diversity_loss(generator: nn.Module) -> Tensor:
    """Sum of `diversity_term` over every parameter of every bucket of the generator (0 for an
    EigenGAN, which has no buckets of blocks)."""
    terms = [diversity_term(p) for bucket in generator.modules() if isinstance(bucket, Bucket)
             for p in bucket.parameters(recurse=True)]
    return torch.stack(terms).sum() if terms else next(generator.parameters()).new_zeros(())
