"""Presets as plain data: the paper's Table 1 and Table 3, a CPU-sized default, and EigenGAN
generators (He et al. 2021) to compare layer by layer with RPGAN.

A preset is a starting point; every value can be overridden by a `rpgan train` flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpgan.config import ModelConfig, TrainConfig
from rpgan.errors import UserError


@dataclass(frozen=True)
class Preset:
    model: ModelConfig
    train: TrainConfig
    data: str  # default data set; "" means the user must pass --data folder:PATH
    about: str


# FID during training: 10k images every 5k steps on the GPU-sized presets; 500 images every 2k
# steps on cifar10-cpu (6% of its training time, docs/benchmarks.md); none on digits, where a
# single evaluation of 250 images is 15% of the whole run.
GPU_EVAL = {"eval_every": 5_000, "eval_samples": 10_000}

PRESETS: dict[str, Preset] = {
    "cifar10": Preset(
        ModelConfig(arch="resnet", image_size=32, blocks=(40,) * 5, width=256, d_width=128),
        TrainConfig(steps=450_000, batch=64, d_steps=5, **GPU_EVAL),
        data="cifar10",
        about="Table 1: SN-ResNet, 5 buckets x 40 blocks, 32x32, d_steps 5, batch 64",
    ),
    "anime": Preset(
        ModelConfig(arch="resnet", image_size=64, blocks=(20,) * 6, width=256, d_width=64),
        TrainConfig(steps=250_000, batch=32, d_steps=1, **GPU_EVAL),
        data="",
        about="Table 1: SN-ResNet, 6 buckets x 20 blocks, 64x64, d_steps 1, batch 32 (Anime Faces folder)",
    ),
    "lsun": Preset(
        ModelConfig(arch="resnet", image_size=128, blocks=(10,) * 7, width=256, d_width=64),
        TrainConfig(steps=250_000, batch=16, d_steps=1, **GPU_EVAL),
        data="",
        about="Table 1: SN-ResNet, 7 buckets x 10 blocks, 128x128, d_steps 1, batch 16 (LSUN-bedroom folder)",
    ),
    "mnist-fc": Preset(
        # No BatchNorm (Table 3 lists none): its batch centring leaves a linear generator's last
        # layer zero-mean inputs, and with it this generator drew noise for 600 steps. Without
        # it, and without the diversity loss (at 0.01 it drew noise too), digits appear by 600.
        ModelConfig(arch="fc", image_size=28, channels=1, blocks=(32, 32, 32, 16, 16), linear=True, d_width=64,
                    plain_buckets=(0, 1, 2, 3)),
        TrainConfig(steps=50_000, batch=64, d_steps=1, diversity_weight=0.0, **GPU_EVAL),
        data="mnist",
        about="Table 3: fully-connected 128-128-256-512-1024-784, 32/32/32/16/16 blocks, no nonlinearities, no BN",
    ),
    "colored-mnist": Preset(
        ModelConfig(arch="dcgan", image_size=32, blocks=(20,) * 4, width=64, d_arch="dcgan", d_width=64),
        TrainConfig(steps=50_000, batch=64, d_steps=5, loss="wgan-gp", **GPU_EVAL),
        data="colored-mnist",
        about="Appendix A.4: DCGAN-like 4-bucket generator, WGAN-GP, randomly colored MNIST",
    ),
    "digits": Preset(
        ModelConfig(arch="resnet", image_size=16, blocks=(10,) * 4, width=64, d_width=32),
        TrainConfig(steps=1_500, batch=32, d_steps=1, sample_every=250, checkpoint_every=500),
        data="digits",
        about="CPU-sized: 4 buckets x 10 blocks, 64 channels, batch 32, colored 16x16 digits; ~5 min on 2 cores",
    ),
    "cifar10-cpu": Preset(
        ModelConfig(arch="resnet", image_size=32, blocks=(10,) * 5, width=64, d_width=64),
        TrainConfig(steps=8_000, batch=32, d_steps=1, sample_every=1000, checkpoint_every=1000, eval_every=2000,
                    eval_samples=500),
        data="cifar10",
        about="CPU-sized CIFAR-10: 5 buckets x 10 blocks, 64 channels, batch 32, 8,000 steps; ~1 hour on 2 cores",
    ),
    "eigengan-cifar10": Preset(
        ModelConfig(arch="eigengan", image_size=32, blocks=(1,) * 4, width=128, z_dim=128, input="gaussian",
                    eigen_dims=6, d_width=128),
        TrainConfig(steps=100_000, batch=64, d_steps=1, lr=2e-4, betas=(0.5, 0.99), diversity_weight=0.0, **GPU_EVAL),
        data="cifar10",
        about="EigenGAN: 3 up-layers + 1 at 32x32, 6 dims each, hinge, SN-ResNet discriminator, 32x32",
    ),
    "eigengan-digits": Preset(
        ModelConfig(arch="eigengan", image_size=16, blocks=(1,) * 4, width=64, z_dim=64, input="gaussian",
                    eigen_dims=6, d_width=32),
        TrainConfig(steps=1_500, batch=32, d_steps=1, lr=2e-4, betas=(0.5, 0.99), diversity_weight=0.0,
                    sample_every=250, checkpoint_every=500),
        data="digits",
        about="CPU-sized EigenGAN: 2 up-layers + 2 at 16x16, 6 dims each, colored 16x16 digits (the digits preset's D)",
    ),
}


DEFAULT_PRESET = "digits"  # CPU-sized, on the embedded data set: what `rpgan train` trains without --preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
