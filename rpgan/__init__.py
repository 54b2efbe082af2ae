"""RPGAN: random paths in a generator as a GAN's latent space (Voynov & Babenko, arXiv 1912.10920).

Importing the package is cheap: the `rpgan` program answers `--help` without torch or Ray. The
names below load their modules on first use.
"""

import os

# A private local Ray must listen on loopback only (Ray has no authentication). Ray reads this
# switch once, when `ray` is first imported, and otherwise rewrites the loopback node address it
# is given into this machine's network address. Every entry point (the `rpgan` command, analysis,
# sweeps, the tests) imports this package before any module that imports ray, so it is set here,
# in one place; `rpgan.distributed.ray_session.connect` refuses to start a local Ray if ray came first.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

# Torch's OpenMP threads spin while they wait for each other: beside any other busy process one
# of them loses its core and the other burns the remaining one (a digits run took 5-18x its quiet
# time beside one busy process, docs/benchmarks.md). Passive threads sleep instead. OpenMP reads
# this when torch loads it, so it is set here, before any module imports torch, and every process
# rpgan starts (Ray's workers, Tune's trials, analysis actors, data loader workers) inherits it.
# A value the user set is kept.
OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}
for _name, _value in OPENMP.items():
    os.environ.setdefault(_name, _value)

_EXPORTS = {
    "ModelConfig": "rpgan.config", "RunConfig": "rpgan.config", "TrainConfig": "rpgan.config",
    "Generator": "rpgan.model.networks", "build_discriminator": "rpgan.model.networks",
    "sample_paths": "rpgan.model.paths", "frozen_path_variations": "rpgan.model.paths",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rpgan' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
