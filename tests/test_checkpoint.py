"""Checkpoints round-trip, resume exactly, and fail with one clean line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import PurePosixPath

import pytest
import torch

from rpgan import checkpoint as ckpt_mod
from rpgan.checkpoint import list_checkpoints, load_generator, load_training_state, read_config, resolve_checkpoint
from rpgan.data import load_data
from rpgan.errors import UserError
from rpgan.train import train
from tests.conftest import tiny_run


def _data(cfg):
    return load_data("digits", cfg.model.image_size, cfg.model.channels)


def _weights(ckpt):
    return {name: torch.load(ckpt / name, weights_only=True) for name in ("generator.pt", "discriminator.pt")}


def test_round_trip_rebuilds_the_generator_from_json(tmp_path):
    cfg = tiny_run()
    final = train(cfg, _data(cfg), tmp_path, quiet=True)
    G, saved, where = load_generator(tmp_path)
    assert where == final and saved == cfg and read_config(final).model == cfg.model
    state = load_training_state(final, cfg, "cpu")
    assert state.step == 4
    for name, tensor in state.generator.state_dict().items():
        assert torch.equal(tensor, G.state_dict()[name])
    paths = G.sample_latent(4, torch.Generator().manual_seed(0))[0]
    assert G(paths).shape == (4, 3, 8, 8)


@pytest.mark.parametrize("arch,loss", [("resnet", "hinge"), ("dcgan", "wgan-gp")])
def test_resume_continues_exactly(tmp_path, arch, loss):
    cfg = tiny_run(arch, loss=loss, steps=4)
    data = _data(cfg)
    one_go = train(cfg, data, tmp_path / "one", quiet=True)
    half = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2))
    train(half, data, tmp_path / "split", quiet=True)
    resumed = train(cfg, data, tmp_path / "split", resume=True, quiet=True)
    a, b = _weights(one_go), _weights(resumed)
    for part in a:
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part} {name} differs after resume"
    sa = torch.load(one_go / "train_state.pt", weights_only=True)
    sb = torch.load(resumed / "train_state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 4 and torch.equal(sa["rng"], sb["rng"])


def test_finished_run_resumes_as_a_no_op(tmp_path):
    cfg = tiny_run()
    final = train(cfg, _data(cfg), tmp_path, quiet=True)
    before = _weights(final)
    assert train(cfg, _data(cfg), tmp_path, resume=True, quiet=True) == final
    after = _weights(final)
    assert all(torch.equal(before["generator.pt"][k], v) for k, v in after["generator.pt"].items())


def test_a_run_directory_is_never_overwritten_without_resume(tmp_path):
    cfg = tiny_run()
    train(cfg, _data(cfg), tmp_path, quiet=True)
    with pytest.raises(UserError, match="--resume"):
        train(cfg, _data(cfg), tmp_path, quiet=True)
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, blocks=(2, 2, 2)))
    with pytest.raises(UserError, match="another model"):
        train(other, _data(other), tmp_path, resume=True, quiet=True)


def test_old_checkpoints_are_pruned_and_no_temporaries_remain(tmp_path):
    cfg = tiny_run(steps=10, checkpoint_every=2)
    train(cfg, _data(cfg), tmp_path, quiet=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000006", "step_00000008", "step_00000010"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    cfg = tiny_run(steps=4, checkpoint_every=2)
    data = _data(cfg)
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        if str(f).endswith("discriminator.pt") and "step_00000004" in str(f):
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(OSError):
        train(cfg, data, tmp_path, quiet=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    load_training_state(resolve_checkpoint(tmp_path), cfg, "cpu")  # still loads


@pytest.fixture
def saved(tmp_path):
    cfg = tiny_run(steps=2)
    return train(cfg, _data(cfg), tmp_path / "run", quiet=True)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_generator(tmp_path / "nowhere")
    with pytest.raises(UserError, match="holds no rpgan checkpoint"):
        load_generator(tmp_path)


def test_missing_file(saved):
    (saved / "generator.pt").unlink()
    with pytest.raises(UserError, match="generator.pt is missing"):
        load_generator(saved)


def test_truncated_weights(saved):
    data = (saved / "generator.pt").read_bytes()
    (saved / "generator.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        load_generator(saved)


def test_pickled_code_is_refused(saved):
    # Any class outside torch's weights-only allowlist stands for code a pickle would run.
    torch.save({"payload": PurePosixPath("/etc/passwd")}, saved / "generator.pt")
    with pytest.raises(UserError, match="not a weights file"):
        load_generator(saved)


def test_config_from_another_model(saved):
    raw = json.loads((saved / "config.json").read_text())
    raw["model"]["blocks"] = [5, 5, 5]
    (saved / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="does not match its config.json"):
        load_generator(saved)


@pytest.mark.parametrize("text", ["{not json", '{"version": 99}', '{"version": 1, "model": {"arch": "x"}}'])
def test_corrupt_config(saved, text):
    (saved / "config.json").write_text(text)
    with pytest.raises(UserError, match="config"):
        load_generator(saved)
