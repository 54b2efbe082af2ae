"""Quality during training: FID (and PRD) of a run's generator every `eval_every` steps.

Each evaluation renders the same `eval_samples` paths (drawn once from the run's seed), so the
curve moves with the generator, not with the paths drawn, and compares their Inception
features with those of as many real training images, cached like every reference
(rpgan.metrics.features). On Ray Train, rank 0 evaluates while the other workers wait at that
step's report (docs/benchmarks.md measures the cost).
"""

from __future__ import annotations

import time
from functools import cached_property

from rpgan.config import RunConfig
from rpgan.io.data import ImageData, to_uint8
from rpgan.io.images import render
from rpgan.metrics.features import Reference, read_cached, reference_index, score, stats_path, write_cached
from rpgan.metrics.inception import InceptionFeatures, features, resolve_weights, weights_identity
from rpgan.metrics.quality import COLUMNS
from rpgan.model.networks import Generator

import numpy as np
import torch

EVALUATION_COLUMNS = (*COLUMNS, "eval_time_s")  # numbers of an evaluated row: the metrics', its time
MEASUREMENT = "measurement"  # and what it measured (rpgan.metrics.features.measurement_id)
REFERENCE_SEED = 0  # chooses the real images every evaluation during training compares with
CHUNK = 250  # images decoded or rendered at once: bounds the memory of a 10k-image evaluation


class Evaluation:
    """Evaluates a run's generator; the Inception network is loaded at once, the reference on first use."""

    def __init__(self, config: RunConfig, data: ImageData, device: str):
        self.config, self.data = config, data
        self.n, self.prd, self.seed = config.train.eval_samples, config.train.eval_prd, config.train.seed
        # now, not at the first evaluation: weights missing offline end the run before it trains
        self.inception = InceptionFeatures(resolve_weights()[0]).to(device)

    @cached_property
    def reference(self) -> Reference:
        """Features [M, 2048] of M = min(eval_samples, training images) real images (cached)."""
        m = self.config.model
        path = stats_path(self.config.data, m.image_size, m.channels, self.n, REFERENCE_SEED, weights_identity(),
                          self.config.labels)
        feats = read_cached(path)
        if feats is None:
            index = reference_index(len(self.data), self.n, REFERENCE_SEED)
            feats = np.concatenate([features(self.inception, self.data.batch(index[i : i + CHUNK])).numpy()
                                    for i in range(0, len(index), CHUNK)])
            write_cached(path, feats)
        return Reference(feats, path.name)

    def __call__(self, generator: Generator) -> dict[str, float | str]:
        """FID, PRD's F_8 and F_1/8 (nan unless eval_prd), the seconds it took, and what was
        measured (rpgan.metrics.features.measurement_id)."""
        start = time.perf_counter()
        paths, z = generator.sample_latent(self.n, torch.Generator().manual_seed(self.seed))
        with torch.no_grad():
            gen = np.concatenate([
                features(self.inception, to_uint8(render(generator, paths[i : i + CHUNK],
                                                         None if z is None else z[i : i + CHUNK]))).numpy()
                for i in range(0, self.n, CHUNK)])
        row = score(gen, self.reference, self.seed, frozenset({"prd"} if self.prd else ()))[0]
        return {**{k: row[k] for k in (*COLUMNS, MEASUREMENT)}, "eval_time_s": time.perf_counter() - start}
