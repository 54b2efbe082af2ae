"""The moving average of the generator's weights (--ema-kimg): every parameter averaged, training
itself unchanged, saved and resumed bit for bit, and what readers load unless asked otherwise."""

from __future__ import annotations

import dataclasses

from rpgan.errors import UserError
from rpgan.io.data import load_data
from rpgan.io.run import Run
from rpgan.training.checkpoint import GENERATOR, GENERATOR_EMA, load_generator, new_training_state
from rpgan.training.loop import ema_beta, train_step
from rpgan.training.train import train
from tests.conftest import tiny_run

import pytest
import torch


def _data(config):
    return load_data("digits", config.model.image_size, config.model.channels)


def _with(config, **train):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))


def test_every_parameter_is_averaged_and_training_is_the_same_with_or_without_it():
    config = tiny_run(ema_kimg=0.01)
    data = _data(config)
    state, plain = new_training_state(config, "cpu"), new_training_state(_with(config, ema_kimg=0.0), "cpu")
    assert plain.ema is None and len(list(state.ema.parameters())) == len(list(state.generator.parameters()))
    beta = ema_beta(config.train)
    assert beta == pytest.approx(0.5 ** (8 / 10))  # half of the average after 10 images of batch 8
    for _ in range(2):
        before = {k: v.clone() for k, v in state.ema.state_dict().items()}
        losses = train_step(state, data, config.train, "cpu")
        assert losses == train_step(plain, data, _with(config, ema_kimg=0.0).train, "cpu")
        trained = state.generator.state_dict()
        for name, new in state.ema.state_dict().items():  # parameters and BatchNorm's statistics; counters copied
            old = before[name]
            want = torch.lerp(old, trained[name], 1 - beta) if old.is_floating_point() else trained[name]
            assert torch.allclose(new, want, rtol=0, atol=1e-7), name
    assert any("running_mean" in name for name in before)  # the tiny generator has BatchNorm
    names = [n for n, _ in state.generator.named_parameters()]
    assert any("z" in n.lower() for n in names)  # the learned Z is one of them (input "learned")
    moved = [not torch.equal(e, p) for e, p in zip(state.ema.parameters(), state.generator.parameters())]
    assert all(moved)  # every parameter, every block of every bucket: the average trails the weights
    assert all(torch.equal(a, b) for a, b in zip(state.generator.parameters(), plain.generator.parameters()))


def test_the_average_resumes_bit_for_bit_and_readers_load_it(tmp_path):
    config = tiny_run(steps=6, checkpoint_every=2, ema_kimg=0.01)
    straight = train(config, _data(config), tmp_path / "straight", quiet=True)
    train(_with(config, steps=4), _data(config), tmp_path / "resumed", quiet=True)
    resumed = train(config, _data(config), tmp_path / "resumed", resume=True, quiet=True)
    for name in (GENERATOR, GENERATOR_EMA):
        a, b = (torch.load(c / name, weights_only=True) for c in (straight, resumed))
        assert all(torch.equal(a[k], b[k]) for k in a), name

    ema = torch.load(straight / GENERATOR_EMA, weights_only=True)
    raw = torch.load(straight / GENERATOR, weights_only=True)
    assert all(torch.equal(v, ema[k]) for k, v in load_generator(tmp_path / "straight")[0].state_dict().items())
    assert all(torch.equal(v, raw[k]) for k, v in load_generator(straight, weights="raw")[0].state_dict().items())
    assert not all(torch.equal(ema[k], raw[k]) for k in raw)

    plain = _with(config, ema_kimg=0.0)
    ckpt = train(plain, _data(plain), tmp_path / "plain", quiet=True)
    assert not (ckpt / GENERATOR_EMA).exists() and Run.at(tmp_path / "plain").checkpoint_steps() == [2, 4, 6]
    with pytest.raises(UserError, match="keeps no moving average"):
        load_generator(ckpt, weights="ema")


def test_cli_sample_picks_the_weights_and_a_missing_average_is_one_line(tmp_path, rpgan):
    config = tiny_run(steps=2, checkpoint_every=2, ema_kimg=0.01)
    train(config, _data(config), tmp_path / "run", quiet=True)
    for weights in ("auto", "raw", "ema"):
        code, _, err = rpgan("sample", "--ckpt", tmp_path / "run", "--generator-weights", weights, "--n", 4,
                             "--out", tmp_path / f"{weights}.png")
        assert code == 0, err
    png = {w: (tmp_path / f"{w}.png").read_bytes() for w in ("auto", "raw", "ema")}
    assert png["auto"] == png["ema"] != png["raw"]
    plain = _with(config, ema_kimg=0.0)
    train(plain, _data(plain), tmp_path / "plain", quiet=True)
    code, _, err = rpgan("sample", "--ckpt", tmp_path / "plain", "--generator-weights", "ema", "--out",
                         tmp_path / "x.png")
    assert code == 2 and "keeps no moving average" in err and len(err.strip().splitlines()) == 1, err

