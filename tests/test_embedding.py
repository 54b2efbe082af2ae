"""`rpgan analyze --embedding classifier`: the semantic distance on a classifier of the data
set's own labels (trained once, cached), recorded in the tables; refused where it cannot be."""

from __future__ import annotations

from analysis import classifier
from rpgan.io.data import ImageData, load_data
from rpgan.training.train import train
from tests.conftest import tiny_run, write_images

import pandas as pd
import pytest
import torch


@pytest.fixture
def quick_classifier(monkeypatch, tmp_path):
    monkeypatch.setattr(classifier, "STEPS", 30)  # its accuracy is not what these tests are about
    monkeypatch.setenv("RPGAN_CACHE", str(tmp_path / "cache"))  # each test its own cached classifiers


def _run(tmp_path, data="digits"):
    cfg = tiny_run(steps=2)
    images = load_data(data, cfg.model.image_size, cfg.model.channels)
    return train(type(cfg)(**{**cfg.__dict__, "data": data}), images, tmp_path / "run", quiet=True)


def test_classifier_embedding_is_recorded_cached_and_reproducible(rpgan, tmp_path, quick_classifier):
    ckpt = _run(tmp_path)
    args = ["analyze", "--ckpt", ckpt, "--evaluations", 3, "--grids", 0, "--workers", 0, "--seed", 1]
    code, out, err = rpgan(*args, "--embedding", "classifier", "--out", tmp_path / "a")
    assert code == 0, err
    assert "semantic: classifier" in out
    cached = list((classifier.cache_root() / "classifiers").glob("*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert rpgan(*args, "--embedding", "classifier", "--out", tmp_path / "b")[0] == 0
    assert cached[0].stat().st_mtime_ns == stamp  # trained once
    cached[0].unlink()
    assert rpgan(*args, "--embedding", "classifier", "--out", tmp_path / "d")[0] == 0  # trained again, the same
    assert pd.read_parquet(tmp_path / "d" / "responsibility")["spread"].equals(
        pd.read_parquet(tmp_path / "a" / "responsibility")["spread"])
    assert rpgan(*args, "--out", tmp_path / "c")[0] == 0
    a, b, c = (pd.read_parquet(tmp_path / d / "responsibility") for d in "abc")
    assert set(a["embedding"]) == {"classifier"} and set(c["embedding"]) == {"inception"}
    pd.testing.assert_frame_equal(a[["layer", "distance", "spread"]], b[["layer", "distance", "spread"]])
    semantic = lambda t: t[t.distance == "semantic"]["spread"].to_numpy()  # noqa: E731
    assert not (semantic(a) == semantic(c)).all()  # other features, other distances
    color = lambda t: t[t.distance == "color"]["spread"].to_numpy()  # noqa: E731
    assert (color(a) == color(c)).all()  # the color distance does not embed
    summary = pd.read_parquet(tmp_path / "a" / "responsibility_summary")
    assert set(summary["embedding"]) == {"classifier"}
    code, _, err = rpgan("compare", tmp_path / "a", tmp_path / "c", "--out", tmp_path / "cmp")
    assert code == 2 and "--embedding classifier" in err  # not set beside Inception-based methods


def test_the_embedding_does_not_see_a_digits_color():
    digits = load_data("digits-gray", 8, 3)  # white digits on black, in 3 channels
    model = classifier.train_classifier(ImageData(digits.images[:64], digits.labels[:64]), steps=2, standardize=True)
    white = digits.images[64:72]
    colored = (white.float() * torch.tensor([0.9, 0.2, 0.5]).view(1, 3, 1, 1)).round().to(torch.uint8)
    a, b = classifier.classifier_features(model, white), classifier.classifier_features(model, colored)
    assert torch.allclose(a, b, atol=0.05 * a.abs().max().item())  # equal up to the rounding to uint8
    other = classifier.classifier_features(model, digits.images[72:80])
    assert not torch.allclose(a, other, atol=0.05 * a.abs().max().item())  # other digits, other features


def test_unlabelled_data_and_a_corrupt_cache_are_one_line(rpgan, tmp_path, quick_classifier):
    write_images(tmp_path / "images", n=4)
    ckpt = _run(tmp_path, data=f"folder:{tmp_path / 'images'}")
    args = ["analyze", "--ckpt", ckpt, "--evaluations", 2, "--grids", 0, "--workers", 0, "--embedding", "classifier"]
    code, _, err = rpgan(*args, "--out", tmp_path / "a")
    assert code == 2 and "has no labels" in err and "--embedding inception" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()
    state, path = classifier.cached_classifier("digits", 8, 3)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(classifier.UserError, match="is unreadable; delete it"):
        classifier.cached_classifier("digits", 8, 3)
