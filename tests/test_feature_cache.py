"""The reference-feature and classifier caches are keyed by what they depend on: the Inception
weights and the data's files, so changing either changes the FID instead of reading stale features."""

from __future__ import annotations

import dataclasses
import os

from rpgan.io.data import data_identity, load_data
from rpgan.metrics.features import stats_path
from rpgan.metrics.inception import resolve_weights, weights_identity
from rpgan.model.networks import Generator
from rpgan.training.evaluation import Evaluation
from tests.conftest import tiny_run, write_images

import numpy as np
import pytest
import torch


def _fid(data: str) -> float:
    """FID during training of a fixed tiny generator on `data` (10 images against 10)."""
    config = dataclasses.replace(tiny_run(eval_samples=10, eval_prd=False), data=data)
    torch.manual_seed(0)
    generator = Generator(config.model).eval()
    images = load_data(data, config.model.image_size, config.model.channels)
    return Evaluation(config, images, "cpu")(generator)["fid"]


def _write_npz(path, seed: int) -> None:
    np.savez(path, x=np.random.default_rng(seed).integers(0, 255, (12, 8, 8, 3), dtype=np.uint8))


def _touch_later(path) -> None:  # a rewrite within the file system's time resolution still counts
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000_000))


@pytest.mark.slow  # Inception on CPU, three times
def test_rewritten_npz_or_other_inception_weights_change_the_fid(tmp_path, monkeypatch):
    data = tmp_path / "images.npz"
    _write_npz(data, 0)
    key = stats_path(f"npz:{data}", 8, 3, 10, 0, weights_identity())
    assert stats_path(f"npz:{data}", 8, 3, 10, 0, weights_identity()) == key  # stable while nothing changes
    before = _fid(f"npz:{data}")

    _write_npz(data, 1)
    _touch_later(data)
    rewritten = _fid(f"npz:{data}")
    assert rewritten != before

    state = resolve_weights()[0]
    torch.save({k: v * 1.5 if k == "Conv2d_1a_3x3.conv.weight" else v for k, v in state.items()}, tmp_path / "w.pth")
    monkeypatch.setenv("RPGAN_INCEPTION_WEIGHTS", str(tmp_path / "w.pth"))
    other = weights_identity()
    assert _fid(f"npz:{data}") != rewritten
    torch.save(state, tmp_path / "w.pth")
    _touch_later(tmp_path / "w.pth")
    assert weights_identity() != other  # the same file, rewritten: hashed again


def test_folder_identity_follows_its_files(tmp_path):
    write_images(tmp_path / "imgs", n=3)
    before = data_identity(f"folder:{tmp_path / 'imgs'}")
    assert data_identity(f"folder:{tmp_path / 'imgs'}/") == before  # the files, however the folder is named
    write_images(tmp_path / "imgs" / "more", n=1)
    assert data_identity(f"folder:{tmp_path / 'imgs'}") != before
    assert data_identity("digits") != data_identity("digits-gray")
