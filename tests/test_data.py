"""Data sets: the embedded default, local arrays and folders, and a clear offline error."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from rpgan.data import load_data, to_float, to_uint8
from rpgan.errors import UserError
from tests.conftest import shared_data


def test_digits_are_colored_and_upsampled():
    data = load_data("digits", 16, 3)
    assert data.images.shape == (1797, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.labels.shape == (1797,) and set(data.labels.tolist()) == set(range(10))
    bright = data.images.float().amax(dim=(2, 3))  # per image, per channel
    assert (bright.std(dim=1) > 20).float().mean() > 0.8  # channels differ: colored
    assert torch.equal(load_data("digits", 16, 3).images, data.images)  # the same colors every time
    gray = load_data("digits-gray", 16, 3).images
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_float_round_trip():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8(to_float(x)), x)
    assert to_float(x).min() >= -1 and to_float(x).max() <= 1


def test_npz_cifar_subset():
    data = load_data(f"npz:{shared_data('cifar10_subset.npz')}", 32, 3)
    assert data.images.shape == (4660, 3, 32, 32) and data.labels.shape == (4660,)
    raw = np.load(shared_data("cifar10_subset.npz"))["x_train"][0]
    assert np.array_equal(data.images[0].permute(1, 2, 0).numpy(), raw)  # no resize: pixels untouched


def test_npz_mnist_resized_to_rgb():
    data = load_data(f"npz:{shared_data('mnist_t10k.npz')}", 32, 3)
    assert data.images.shape == (10000, 3, 32, 32) and data.labels[:3].tolist() == [7, 2, 1]


def test_npz_of_the_wrong_kind(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(UserError, match="want uint8"):
        load_data(f"npz:{tmp_path / 'f.npz'}", 8, 3)


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_data(f"folder:{tmp_path}", 16, 3)
    assert len(data) == 5
    assert data.batch(torch.tensor([4, 0, 4])).shape == (3, 3, 16, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .png"):
        load_data(f"folder:{tmp_path / 'empty'}", 16, 3)


def test_unknown_data_set():
    with pytest.raises(UserError, match="unknown data set 'imagenet'"):
        load_data("imagenet", 32, 3)


def test_offline_download_names_the_alternatives(monkeypatch, tmp_path):
    """No network here: torchvision's download fails, and the error says what to use instead."""
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("RPGAN_DATA", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError, match="npz:PATH or folder:PATH") as e:
        load_data("cifar10", 32, 3)
    assert "\n" not in str(e.value)
