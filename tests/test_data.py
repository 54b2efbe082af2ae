"""Data sets: the embedded default, local arrays and folders, and a clear offline error."""

from __future__ import annotations

import subprocess
import sys
import urllib.error

from rpgan.errors import UserError
from rpgan.io.data import embedded_digits, load_data, select_labels, to_float, to_uint8
from tests.conftest import shared_data

import numpy as np
import pytest
import torch
from PIL import Image


def test_digits_are_colored_and_upsampled():
    data = load_data("digits", 16, 3)
    assert data.images.shape == (1797, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.labels.shape == (1797,) and set(data.labels.tolist()) == set(range(10))
    bright = data.images.float().amax(dim=(2, 3))  # per image, per channel
    assert (bright.std(dim=1) > 20).float().mean() > 0.8  # channels differ: colored
    assert torch.equal(load_data("digits", 16, 3).images, data.images)  # the same colors every time
    gray = load_data("digits-gray", 16, 3).images
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_the_embedded_digits_are_scikit_learns_read_without_importing_it():
    from sklearn.datasets import load_digits

    pixels, digit = embedded_digits()
    reference = load_digits()
    assert np.array_equal(pixels, reference.images) and pixels.dtype == reference.images.dtype
    assert np.array_equal(digit, reference.target) and digit.dtype == reference.target.dtype
    script = "import sys, rpgan; from rpgan.io.data import load_data; load_data('digits', 8, 3); " \
             "print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["False"], done.stderr


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


def _npz(tmp_path, **arrays) -> str:
    np.savez(tmp_path / "d.npz", **arrays)
    return f"npz:{tmp_path / 'd.npz'}"


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((0, 8, 8), np.uint8)}, "holds no images"),
    ({"x": np.zeros((4, 8, 8, 2), np.uint8)}, "images have 2 channels"),
    ({"x": np.zeros((4, 3, 8, 8), np.uint8)}, "images have 8 channels"),  # channels first
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.zeros(3, np.int64)}, "one integer label per image"),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.zeros(4, np.float32)}, "one integer label per image"),
    ({"x": np.zeros((4, 40, 16), np.uint8)}, "40x16, not square"),
    ({"x": np.zeros((4, 16, 40, 3), np.uint8)}, "16x40, not square"),
    ({}, "name the image array"),
])
def test_npz_that_cannot_be_trained_on_is_refused_at_load_time(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message) as e:
        load_data(_npz(tmp_path, **arrays), 16, 3)
    assert "\n" not in str(e.value)


def test_npz_that_is_not_an_npz(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", x=np.zeros((100, 8, 8), np.uint8))
    raw = (tmp_path / "d.npz").read_bytes()
    for content, message in [(raw[: len(raw) // 2], "cannot read it as .npz"), (b"", "cannot read it as .npz")]:
        (tmp_path / "d.npz").write_bytes(content)
        with pytest.raises(UserError, match=message):
            load_data(f"npz:{tmp_path / 'd.npz'}", 8, 3)
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(UserError, match="one .npy array"):
        load_data(f"npz:{tmp_path / 'a.npy'}", 8, 3)
    for spec in ("npz:", "folder:"):
        with pytest.raises(UserError, match="needs a path"):
            load_data(spec, 8, 3)


def test_folder_skips_unreadable_images_with_a_count(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "a_garbage.png").write_bytes(b"not an image at all")
    png = (tmp_path / "0.png").read_bytes()
    (tmp_path / "b_truncated.png").write_bytes(png[: len(png) // 2])
    data = load_data(f"folder:{tmp_path}", 8, 3)
    assert len(data) == 3 and data.batch(torch.arange(3)).shape == (3, 3, 8, 8)
    err = capsys.readouterr().err
    assert "skipping 2 of 5 image files" in err and "a_garbage.png" in err and err.count("\n") == 1
    for name in ("0.png", "1.png", "2.png"):
        (tmp_path / name).unlink()
    with pytest.raises(UserError, match="none of its 2 image files is readable"):
        load_data(f"folder:{tmp_path}", 8, 3)


def test_folder_image_that_only_fails_to_decode_is_one_line(tmp_path):
    """A truncated JPEG has a good header (found at load time), so it fails when it is drawn."""
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "a.jpg", quality=95)
    raw = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(raw[: len(raw) * 3 // 4])  # the header whole, the pixels cut
    data = load_data(f"folder:{tmp_path}", 8, 3)
    with pytest.raises(UserError, match=r"a\.jpg cannot be decoded .*resume") as e:
        data.batch(torch.tensor([0]))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("6-0", "the range 6-0 runs backwards; write 0-6"),
    ("0-99999999999", "labels are 0..100000"),
    ("0-6,42", "no image has label 42; the data's labels are 0,1,2"),
    ("-1", "--labels takes"),
])
def test_bad_label_ranges(text, message):
    with pytest.raises(UserError, match=message):
        select_labels(load_data("digits", 8, 3), text)


def test_unknown_data_set_lists_the_choices():
    with pytest.raises(UserError, match="choose one of digits, digits-gray, .*npz:PATH, folder:PATH$"):
        load_data("imagenet", 32, 3)
