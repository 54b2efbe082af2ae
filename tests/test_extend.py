"""Incremental learning: new blocks train, every old parameter stays bit-identical."""

from __future__ import annotations

import dataclasses

from rpgan.errors import UserError
from rpgan.io.data import load_data, parse_labels, select_labels
from rpgan.model.extend import add_blocks
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import load_generator
from rpgan.training.train import start_extension, train
from tests.conftest import TINY_MODELS, tiny_run

import pytest
import torch


def test_added_blocks_leave_old_paths_unchanged():
    G = Generator(TINY_MODELS["resnet"]).eval()
    grown = add_blocks(G, [2, 0, 1]).eval()
    assert grown.blocks == (5, 4, 3)
    paths = G.sample_latent(12, torch.Generator().manual_seed(0))[0]
    with torch.no_grad():
        torch.testing.assert_close(grown(paths), G(paths), rtol=0, atol=0)


@pytest.mark.parametrize("add", [[1, 2], [0, 0, 0], [-1, 1, 0]])
def test_bad_block_counts(add):
    with pytest.raises(UserError, match="--add-blocks"):
        add_blocks(Generator(TINY_MODELS["resnet"]), add)


def _extended_run(tmp_path, steps: int):
    base = tiny_run(steps=2)
    data = load_data("digits", 8, 3)
    source = train(base, data, tmp_path / "base", quiet=True)
    old, _, _ = load_generator(source)
    cfg, start = start_extension(source, [2, 1, 0], steps, seed=5)
    return old, cfg, data, start


def test_only_new_blocks_train(tmp_path):
    old, cfg, data, start = _extended_run(tmp_path, steps=4)
    initial = {k: v.clone() for k, v in start.generator.state_dict().items()}
    final = train(cfg, data, tmp_path / "ext", quiet=True, start=start)
    state = load_generator(final)[0].state_dict()
    for name, before in old.state_dict().items():  # parameters, Z and BatchNorm statistics
        after = state[name]
        assert torch.equal(after[: len(before)] if before.dim() else after, before), f"{name} changed"
    # blocks (3, 4, 2) grew by (2, 1, 0): the new slices trained
    assert not torch.equal(state["buckets.0.fc.weight"][3:], initial["buckets.0.fc.weight"][3:])
    assert not torch.equal(state["buckets.1.conv1.weight"][4:], initial["buckets.1.conv1.weight"][4:])


def test_extension_resumes_exactly(tmp_path):
    _, cfg, data, start = _extended_run(tmp_path / "a", steps=4)
    one_go = train(cfg, data, tmp_path / "a" / "ext", quiet=True, start=start)
    _, cfg_b, data, start_b = _extended_run(tmp_path / "b", steps=4)
    half = dataclasses.replace(cfg_b, train=dataclasses.replace(cfg_b.train, steps=4))
    train(half, data, tmp_path / "b" / "ext", quiet=True, start=start_b)
    resumed = train(cfg_b, data, tmp_path / "b" / "ext", quiet=True, resume=True)
    a = torch.load(one_go / "generator.pt", weights_only=True)
    b = torch.load(resumed / "generator.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_labels_select_a_subset():
    assert parse_labels("0-2,7") == [0, 1, 2, 7] and parse_labels("5") == [5]
    with pytest.raises(UserError, match="--labels takes"):
        parse_labels("a-b")
    data = select_labels(load_data("digits", 8, 3), "0-6")
    assert set(data.labels.tolist()) == set(range(7)) and len(data) == len(data.images) < 1797
    with pytest.raises(UserError, match="no image"):
        select_labels(load_data("digits", 8, 3), "42")


def test_cli_extend(tmp_path, rpgan):
    tiny = ["--blocks", "2", "--width", "8", "--batch", "4"]
    assert rpgan("train", *tiny, "--steps", "2", "--labels", "0-6", "--out", tmp_path / "a")[0] == 0
    assert rpgan("extend", "--ckpt", tmp_path / "a", "--add-blocks", "1,1,0,0", "--steps", "2",
                 "--out", tmp_path / "b")[0] == 0
    G, config, _ = load_generator(tmp_path / "b")
    assert G.blocks == (3, 3, 2, 2) and config.train.frozen_blocks == (2, 2, 2, 2) and config.labels == ""
    assert config.dataset_size == 1797
    code, _, err = rpgan("extend", "--ckpt", tmp_path / "a", "--add-blocks", "1,1", "--out", tmp_path / "c")
    assert code == 2 and "needs 4 non-negative counts" in err


def test_digit_classifier_learns_real_mnist():
    from analysis.classifier import classify, train_classifier
    from rpgan.io.data import ImageData, to_float
    from tests.conftest import shared_data

    mnist = load_data(f"npz:{shared_data('mnist_t10k.npz')}", 16, 1)
    clf = train_classifier(ImageData(mnist.images[:4000], mnist.labels[:4000]), steps=200)
    predicted = classify(clf, to_float(mnist.images[9000:]))
    assert (predicted == mnist.labels[9000:]).float().mean() > 0.9
