"""EigenGAN (He, Kan, Shan, ICCV 2021): a generator whose every layer owns a linear subspace.

Layer l holds an orthonormal basis U_l (eigen_dims vectors of the layer's input feature
map), their importances L_l and an origin mu_l. A sample draws noise eps and, per layer,
coefficients z_l ~ N(0, I); layer l adds phi_l = sum_j L_lj z_lj u_lj + mu_l to its input
(through a 1x1 conv) and to its output (through its up-convolution), so each z_lj is one
interpretable dimension of that layer. The orthogonality regulariser ||U_l^T U_l - I||^2
keeps the basis orthonormal during training.

The generator has the interface of rpgan.model.networks.Generator (cfg, blocks, buckets, sample_latent,
forward(paths, z)), so training, checkpoints and the analysis jobs use it unchanged: its
"buckets" are its subspace layers, each of one block, and its paths are all zero. Its z is
[eps (z_dim), z_1, ..., z_L (eigen_dims each)]. The layers follow the authors' public code;
BatchNorm + LeakyReLU(0.2) come before each convolution.
"""

from __future__ import annotations

import math

from rpgan.config import ModelConfig

import torch
from torch import Tensor, nn


class Subspace(nn.Module):
    """phi = (L * z) @ U + mu for coefficients z [N, q] -> [N, *shape].

    U [q, d] holds the basis as rows (d = prod(shape)), initialised orthonormal; L [q] starts
    at 3q, ..., 6, 3 (the authors' initial importance order); mu [d] starts at zero."""

    def __init__(self, q: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape
        self.U = nn.Parameter(nn.init.orthogonal_(torch.empty(q, math.prod(shape))))
        self.L = nn.Parameter(3.0 * torch.arange(q, 0, -1, dtype=torch.float32))
        self.mu = nn.Parameter(torch.zeros(self.U.shape[1]))

    def forward(self, z: Tensor) -> Tensor:
        return ((z * self.L) @ self.U + self.mu).view(len(z), *self.shape)


def orthogonality(U: Tensor) -> Tensor:
    """||U^T U - I||_F^2 for a basis stored as rows, U [q, d] (so U @ U.T is the q x q Gram
    matrix of the basis vectors). Zero exactly when the rows are orthonormal."""
    gram = U @ U.T
    return ((gram - torch.eye(len(U), device=U.device, dtype=U.dtype)) ** 2).sum()


def orthogonality_loss(generator: nn.Module) -> Tensor:
    """Sum of `orthogonality` over every Subspace of the generator; 0 when it has none."""
    terms = [orthogonality(m.U) for m in generator.modules() if isinstance(m, Subspace)]
    return torch.stack(terms).sum() if terms else next(generator.parameters()).new_zeros(())


class EigenLayer(nn.Module):
    """One layer: inject phi at the input resolution, then a 3x3 (up-)convolution and a 3x3
    convolution. x: [N, c_in, s, s], z: [N, q] -> [N, c_out, 2s or s, 2s or s]."""

    def __init__(self, q: int, c_in: int, c_out: int, size: int, upsample: bool):
        super().__init__()
        stride = 2 if upsample else 1

        def up(c: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(c, c_out, 3, stride, 1, output_padding=stride - 1)

        self.subspace = Subspace(q, (c_in, size, size))
        self.inject_in = nn.Conv2d(c_in, c_in, 1)
        self.inject_out = up(c_in)
        self.conv1 = nn.Sequential(nn.BatchNorm2d(c_in), nn.LeakyReLU(0.2), up(c_in))
        self.conv2 = nn.Sequential(nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2), nn.Conv2d(c_out, c_out, 3, 1, 1))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        phi = self.subspace(z)
        h = self.conv1(x + self.inject_in(phi)) + self.inject_out(phi)
        return self.conv2(h)


def layer_widths(cfg: ModelConfig) -> list[int]:
    """Channels entering each layer and leaving the last: halving per up-layer down to `width`."""
    n_up = cfg.n_upsamplings
    return [cfg.width * 2 ** max(n_up - 1 - i, 0) for i in range(cfg.n_buckets + 1)]


class EigenGenerator(nn.Module):
    """EigenGAN generator. `G(paths, z)` renders z [N, latent_dim] (paths [N, L] are ignored:
    all zero) as images [N, channels, size, size] in [-1, 1]. Layers 1..n_upsamplings double
    the resolution from 4x4; further layers keep the image size."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        c = layer_widths(cfg)
        self.stem = nn.Linear(cfg.z_dim, 16 * c[0])
        sizes = [4 * 2 ** min(i, cfg.n_upsamplings) for i in range(cfg.n_buckets)]
        self.buckets = nn.ModuleList(
            EigenLayer(cfg.eigen_dims, c[i], c[i + 1], sizes[i], upsample=i < cfg.n_upsamplings)
            for i in range(cfg.n_buckets))
        self.head = nn.Sequential(nn.BatchNorm2d(c[-1]), nn.LeakyReLU(0.2), nn.Conv2d(c[-1], cfg.channels, 3, 1, 1))

    @property
    def blocks(self) -> tuple[int, ...]:
        return self.cfg.blocks

    def sample_latent(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """All-zero paths [n, L] and Gaussian z [n, latent_dim], on CPU."""
        paths = torch.zeros(n, self.cfg.n_buckets, dtype=torch.long)
        return paths, torch.randn(n, self.cfg.latent_dim, generator=generator)

    def coefficients(self, layer: int) -> slice:
        """The columns of z that hold layer `layer`'s (1-based) coefficients z_l."""
        start = self.cfg.z_dim + (layer - 1) * self.cfg.eigen_dims
        return slice(start, start + self.cfg.eigen_dims)

    def forward(self, paths: Tensor, z: Tensor | None = None) -> Tensor:
        if z is None:
            raise ValueError("an EigenGAN generator renders z: call G(paths, z)")
        z = z.to(next(self.parameters()).device)
        x = self.stem(z[:, : self.cfg.z_dim]).view(len(z), -1, 4, 4)
        for i, layer in enumerate(self.buckets):
            x = layer(x, z[:, self.coefficients(i + 1)])
        size = self.cfg.image_size
        return torch.tanh(self.head(x)).view(len(z), self.cfg.channels, size, size)
