"""RPGAN: random paths in a generator as a GAN's latent space (Voynov & Babenko, arXiv 1912.10920)."""

from rpgan.config import ModelConfig, RunConfig, TrainConfig
from rpgan.model import Generator, build_discriminator
from rpgan.paths import frozen_path_variations, sample_paths

__all__ = ["ModelConfig", "RunConfig", "TrainConfig", "Generator", "build_discriminator", "sample_paths",
           "frozen_path_variations"]
