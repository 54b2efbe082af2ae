"""RPGAN: random paths in a generator as a GAN's latent space (Voynov & Babenko, arXiv 1912.10920)."""

import os

# A private local Ray must listen on loopback only (Ray has no authentication). Ray reads this
# switch once, when `ray` is first imported, and otherwise rewrites the loopback node address it
# is given into this machine's network address. Every entry point (the `rpgan` command, analysis,
# sweeps, the tests) imports this package before any module that imports ray, so it is set here,
# in one place; `rpgan.distributed.ray_session.connect` refuses to start a local Ray if ray came first.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from rpgan.config import ModelConfig, RunConfig, TrainConfig
from rpgan.model.networks import Generator, build_discriminator
from rpgan.model.paths import frozen_path_variations, sample_paths

__all__ = ["ModelConfig", "RunConfig", "TrainConfig", "Generator", "build_discriminator", "sample_paths",
           "frozen_path_variations"]
