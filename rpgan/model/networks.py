"""The RPGAN generator and its discriminators, top to bottom.

Generator = a chain of buckets; sample k's image is B_n[s_n] o ... o B_1[s_1](Z) for its path
s = paths[k] (0-based). Three backbones:

- "resnet" (SN-ResNet, Miyato 2018): bucket 1 a linear layer Z -> 4x4xC, then residual
  up-blocks to the image size, optional same-resolution residual buckets, a shared
  BN+ReLU, and a last bucket that is a 3x3 conv to RGB. 32x32: 5 buckets, 64: 6, 128: 7.
- "dcgan" (appendix A.4): a linear bucket to 4x4, then 4x4 stride-2 transposed convs,
  one bucket each, halving the channels; 32x32: 4 buckets.
- "fc" (Table 3): fully-connected buckets 128 -> 128 -> 256 -> 512 -> 1024 -> 784.

`build_generator` also builds the EigenGAN generator (rpgan/model/eigengan.py), which has this
generator's interface.

`linear=True` replaces every ReLU of the generator by identity (section 4.4); the final tanh
stays. The core model never imports Ray.
"""

from __future__ import annotations

from rpgan.config import ModelConfig
from rpgan.model.eigengan import EigenGenerator
from rpgan.model.paths import sample_paths
from rpgan.model.routing import Bucket, Route, RoutedBatchNorm, RoutedConv2d, RoutedLinear

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

# ---------------------------------------------------------------------------------------------
# Buckets


class DenseBucket(Bucket):
    """m linear blocks, optionally reshaped to a feature map, optionally followed by BN+act."""

    def __init__(self, m: int, d_in: int, d_out: int, *, out_shape: tuple[int, ...] | None = None,
                 norm_act: nn.Module | None = None):
        super().__init__(m)
        self.fc = RoutedLinear(m, d_in, d_out)
        self.out_shape = out_shape
        self.norm = RoutedBatchNorm(m, out_shape[0] if out_shape else d_out) if norm_act else None
        self.act = norm_act

    def blocks_forward(self, x: Tensor, route: Route) -> Tensor:
        x = self.fc(x, route)
        if self.out_shape:
            x = x.view(-1, *self.out_shape)
        if self.norm is not None:
            x = self.act(self.norm(x, route))
        return x


class ConvBucket(Bucket):
    """m (transposed) convolution blocks, optionally followed by BN+act."""

    def __init__(self, m: int, c_in: int, c_out: int, kernel: int, stride: int, padding: int, *,
                 transposed: bool = False, norm_act: nn.Module | None = None):
        super().__init__(m)
        self.conv = RoutedConv2d(m, c_in, c_out, kernel, stride, padding, transposed)
        self.norm = RoutedBatchNorm(m, c_out) if norm_act else None
        self.act = norm_act

    def blocks_forward(self, x: Tensor, route: Route) -> Tensor:
        x = self.conv(x, route)
        if self.norm is not None:
            x = self.act(self.norm(x, route))
        return x


class ResidualBucket(Bucket):
    """m SN-ResNet generator blocks: BN-act-(up)-conv3-BN-act-conv3, plus a (up)-conv1 skip."""

    def __init__(self, m: int, c_in: int, c_out: int, *, upsample: bool, act: nn.Module):
        super().__init__(m)
        self.upsample, self.act = upsample, act
        self.bn1, self.conv1 = RoutedBatchNorm(m, c_in), RoutedConv2d(m, c_in, c_out, 3, 1, 1)
        self.bn2, self.conv2 = RoutedBatchNorm(m, c_out), RoutedConv2d(m, c_out, c_out, 3, 1, 1)
        learn_skip = upsample or c_in != c_out
        self.skip = RoutedConv2d(m, c_in, c_out, 1) if learn_skip else None

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def blocks_forward(self, x: Tensor, route: Route) -> Tensor:
        h = self.conv1(self._up(self.act(self.bn1(x, route))), route)
        h = self.conv2(self.act(self.bn2(h, route)), route)
        s = self._up(x)
        return h + (self.skip(s, route) if self.skip is not None else s)


def build_buckets(cfg: ModelConfig) -> tuple[list[Bucket], nn.Module]:
    """The generator's buckets, and the shared module applied before the last bucket."""
    act = nn.Identity() if cfg.linear else nn.ReLU()
    m, w = cfg.blocks, cfg.width
    if cfg.arch == "resnet":
        n_up = cfg.n_upsamplings
        buckets: list[Bucket] = [DenseBucket(m[0], cfg.z_dim, 16 * w, out_shape=(w, 4, 4))]
        for i in range(1, cfg.n_buckets - 1):
            buckets.append(ResidualBucket(m[i], w, w, upsample=i <= n_up, act=act))
        buckets.append(ConvBucket(m[-1], w, cfg.channels, 3, 1, 1))
        # The public RPGAN code shares this BN+ReLU across blocks; it sits outside bucket n.
        return buckets, nn.Sequential(nn.BatchNorm2d(w), act)
    if cfg.arch == "dcgan":
        widths = [w * 2 ** (cfg.n_upsamplings - 1 - i) for i in range(cfg.n_upsamplings)] + [cfg.channels]
        buckets = [DenseBucket(m[0], cfg.z_dim, 16 * widths[0], out_shape=(widths[0], 4, 4), norm_act=act)]
        for i in range(1, cfg.n_buckets):
            last = i == cfg.n_buckets - 1
            buckets.append(ConvBucket(m[i], widths[i - 1], widths[i], 4, 2, 1, transposed=True,
                                      norm_act=None if last else act))
        return buckets, nn.Identity()
    if cfg.arch != "fc":
        raise ValueError(f"arch {cfg.arch!r} has no buckets of blocks: use build_generator")
    dims = [cfg.z_dim, *cfg.fc_widths, cfg.channels * cfg.image_size**2]
    plain = {cfg.n_buckets - 1, *cfg.plain_buckets}
    buckets = [DenseBucket(m[i], dims[i], dims[i + 1], norm_act=None if i in plain else act)
               for i in range(cfg.n_buckets)]
    return buckets, nn.Identity()


# ---------------------------------------------------------------------------------------------
# Generator


class Generator(nn.Module):
    """RPGAN generator. `G(paths)` renders LongTensor paths [N, n_buckets] as images
    [N, channels, size, size] in [-1, 1]; with `input="gaussian"` pass z [N, z_dim] too."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        buckets, self.pre_output = build_buckets(cfg)
        self.buckets = nn.ModuleList(buckets)
        self.frozen_statistics = False  # incremental learning: BatchNorm keeps its running statistics
        if cfg.input == "learned":
            self.z = nn.Parameter(torch.randn(cfg.z_dim))
        elif cfg.input == "fixed":
            self.register_buffer("z", torch.randn(cfg.z_dim))

    @property
    def blocks(self) -> tuple[int, ...]:
        return self.cfg.blocks

    def train(self, mode: bool = True) -> Generator:
        """As nn.Module.train; with frozen_statistics every BatchNorm stays in eval mode."""
        super().train(mode)
        if self.frozen_statistics:
            for m in self.modules():
                if isinstance(m, RoutedBatchNorm | nn.modules.batchnorm._BatchNorm):
                    m.train(False)
        return self

    def sample_latent(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """Random paths [n, n_buckets] (and Gaussian z [n, z_dim] for input="gaussian"), on CPU."""
        paths = sample_paths(self.cfg.blocks, n, generator)
        z = torch.randn(n, self.cfg.latent_dim, generator=generator) if self.cfg.input == "gaussian" else None
        return paths, z

    def forward(self, paths: Tensor, z: Tensor | None = None) -> Tensor:
        device = next(self.parameters()).device
        # Samples per block of every bucket, from the paths on the host (sampled there): the
        # group router then never reads the device back, once per bucket, to size its chunks.
        counts: list[list[int] | None] = [None] * len(self.blocks)
        if self.cfg.routing == "group":
            host = paths.cpu()
            counts = [torch.bincount(host[:, i], minlength=m).tolist() for i, m in enumerate(self.blocks)]
        paths = paths.to(device)
        if self.cfg.input == "gaussian":
            if z is None:
                raise ValueError("this generator has a Gaussian input: call G(paths, z)")
            x = z.to(device)
        else:
            x = self.z.expand(len(paths), -1)
        last = len(self.buckets) - 1
        for i, bucket in enumerate(self.buckets):
            if i == last:
                x = self.pre_output(x)
            x = bucket(x, paths[:, i], self.cfg.routing, counts[i])
        size = self.cfg.image_size
        return torch.tanh(x).view(len(paths), self.cfg.channels, size, size)


def build_generator(cfg: ModelConfig) -> Generator | EigenGenerator:
    """The generator `cfg` describes: RPGAN (resnet, dcgan, fc) or EigenGAN."""
    return EigenGenerator(cfg) if cfg.arch == "eigengan" else Generator(cfg)


# ---------------------------------------------------------------------------------------------
# Discriminators (spectral normalisation on every layer)


class DiscriminatorBlock(nn.Module):
    """SN-ResNet discriminator block; `first` is Miyato's optimised block (no leading ReLU)."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if down or c_in != c_out else None

    def _down(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self._down(self.conv2(F.relu(h)))
        if self.skip is None:
            return h + x
        s = self.skip(self._down(x)) if self.first else self._down(self.skip(x))
        return h + s


class ResNetDiscriminator(nn.Module):
    """Down-blocks to 8x8 or below, two more blocks, ReLU, global sum pool, linear."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w, res = cfg.d_width, cfg.image_size
        widen = cfg.image_size > 32  # larger images: double channels per level, up to 8x
        blocks, c, level = [DiscriminatorBlock(cfg.channels, w, down=True, first=True)], w, 0
        res //= 2
        while res > 8:
            level += 1
            c_out = min(w * 2**level, 8 * w) if widen else w
            blocks += [DiscriminatorBlock(c, c_out, down=True)]
            c, res = c_out, res // 2
        blocks += [DiscriminatorBlock(c, c, down=False), DiscriminatorBlock(c, c, down=False)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = spectral_norm(nn.Linear(c, 1))

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, C, H, W] -> logits [N]."""
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.fc(h).squeeze(1)


class DCGANDiscriminator(nn.Module):
    """Miyato's standard CNN: per level conv3x3 + conv4x4/2 with LeakyReLU, doubling width."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c, res = [], cfg.channels, cfg.image_size
        width = cfg.d_width
        while res > 4:
            layers += [spectral_norm(nn.Conv2d(c, width, 3, 1, 1)), nn.LeakyReLU(0.1),
                       spectral_norm(nn.Conv2d(width, width, 4, 2, 1)), nn.LeakyReLU(0.1)]
            c, res, width = width, (res - 2) // 2 + 1, width * 2
        self.features = nn.Sequential(*layers)
        self.fc = spectral_norm(nn.Linear(c * res * res, 1))

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, C, H, W] -> logits [N]."""
        return self.fc(self.features(x).flatten(1)).squeeze(1)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    return ResNetDiscriminator(cfg) if cfg.d_arch == "resnet" else DCGANDiscriminator(cfg)
