"""Checkpoints round-trip, resume exactly, and fail with one clean line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path, PurePosixPath

from rpgan.errors import UserError
from rpgan.io.data import load_data
from rpgan.io.run import Run, prunable
from rpgan.training import checkpoint as ckpt_mod
from rpgan.training.checkpoint import (
    load_generator,
    load_training_state,
    new_training_state,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
)
from rpgan.training.train import train
from tests.conftest import tiny_run

import pytest
import torch


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


@pytest.mark.parametrize("arch,loss,precision", [("resnet", "hinge", "fp32"), ("dcgan", "wgan-gp", "fp32"),
                                                ("resnet", "hinge", "bf16"), ("dcgan", "wgan-gp", "bf16"),
                                                ("resnet", "hinge", "fp16"), ("dcgan", "wgan-gp", "fp16")])
def test_resume_continues_exactly(tmp_path, arch, loss, precision):
    cfg = tiny_run(arch, loss=loss, steps=4, precision=precision)
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
    assert sa["scaler_g"] == sb["scaler_g"] and sa["scaler_d"] == sb["scaler_d"]
    assert bool(sa["scaler_g"]) == (precision == "fp16")  # a loss scale only where fp16 needs one


def test_the_fp16_loss_scale_is_part_of_the_checkpoint(tmp_path):
    cfg = tiny_run(precision="fp16")
    state = new_training_state(cfg, "cpu")
    state.scaler_g = torch.amp.GradScaler("cpu", init_scale=512.0)  # as after overflows
    ckpt = Path(save_checkpoint(Run.at(tmp_path), cfg, state))
    assert load_training_state(ckpt, cfg, "cpu").scaler_g.get_scale() == 512.0


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
    assert [Path(c).name for c in Run.at(tmp_path).checkpoints()] == ["step_00000006", "step_00000008", "step_00000010"]
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
    assert [Path(c).name for c in Run.at(tmp_path).checkpoints()] == ["step_00000002"]
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
    with pytest.raises(UserError, match="holds objects other than tensors") as refused:
        load_generator(saved)
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)  # torch's advice is not ours


def test_a_config_version_of_another_type_says_what_it_is(saved):
    raw = json.loads((saved / "config.json").read_text())
    raw["version"] = "1"
    (saved / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match='config version "1" is not supported'):
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


def test_malformed_config_json_is_one_line(saved):
    """Whatever bytes config.json holds, loading the checkpoint is one UserError line."""
    good = json.loads((saved / "config.json").read_text())
    wrong = [("width", 1.5), ("width", "abc"), ("width", [8]), ("blocks", [[3], 4, 2]), ("linear", "no"),
             ("width", 10**6)]
    cases = [b"\xff\xfe\xfa\xfb not utf-8", b"\xc3\x28{}", b"[" * 100_000, b"[1, 2]", b"null",
             json.dumps({**good, "bogus": 1}).encode(), json.dumps({**good, "model": [1]}).encode(),
             *(json.dumps({**good, "model": {**good["model"], k: v}}).encode() for k, v in wrong),
             json.dumps({**good, "train": {**good["train"], "lr": float("nan")}}).encode()]
    for data in cases:
        (saved / "config.json").write_bytes(data)
        with pytest.raises(UserError, match="^checkpoint ") as e:
            load_generator(saved)
        assert "\n" not in str(e.value), data[:40]


def _truncate(file):
    file.write_bytes(file.read_bytes()[:100])


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, capsys):
    cfg = tiny_run(steps=6, checkpoint_every=2)
    train(cfg, _data(cfg), tmp_path, quiet=True)
    clean = tmp_path.with_name(tmp_path.name + "-clean")
    train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=8)), _data(cfg), clean, quiet=True)
    _truncate(tmp_path / "checkpoints" / "step_00000006" / "generator.pt")
    capsys.readouterr()
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=8))
    final = train(longer, _data(cfg), tmp_path, resume=True, quiet=True)
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "step_00000006" in err and "generator.pt is truncated" in err
    assert "from step 4 (step_00000004)" in err
    # the valid step-4 checkpoint was never pruned for the broken one; step 6 is whole again
    assert [Path(c).name for c in Run.at(tmp_path).checkpoints()] == ["step_00000004", "step_00000006", "step_00000008"]
    assert final.name == "step_00000008"
    assert all(torch.equal(v, _weights(clean / "checkpoints" / "step_00000008")["generator.pt"][k])
               for k, v in _weights(final)["generator.pt"].items())


def test_resume_refuses_a_run_none_of_whose_checkpoints_loads(tmp_path):
    cfg = tiny_run(steps=2, checkpoint_every=2)
    train(cfg, _data(cfg), tmp_path, quiet=True)
    _truncate(tmp_path / "checkpoints" / "step_00000002" / "train_state.pt")
    with pytest.raises(UserError, match="no checkpoint of this run loads"):
        train(cfg, _data(cfg), tmp_path, resume=True, quiet=True)
    assert [Path(c).name for c in Run.at(tmp_path).checkpoints()] == ["step_00000002"]  # nothing started over


def test_prunable_keeps_the_newest_at_or_before_the_step():
    assert prunable([2, 4, 6, 8], 8) == [2]
    assert prunable([2, 4, 6, 8], 6, keep=2) == [2]  # 8 (newer, unloadable) is not counted
    assert prunable([4, 6], 5) == []


def test_leftovers_of_a_killed_write_are_removed_on_resume(tmp_path):
    cfg = tiny_run(steps=2, checkpoint_every=2)
    train(cfg, _data(cfg), tmp_path, quiet=True)
    left = tmp_path / "checkpoints" / ".step_00000004.tmp-1234abcd"
    left.mkdir()
    (left / "generator.pt").write_bytes(b"half")
    train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4)), _data(cfg), tmp_path,
          resume=True, quiet=True)
    assert not left.exists()


def test_writes_reach_the_disk_before_their_rename(tmp_path, monkeypatch):
    from rpgan.io import atomic

    events = []
    real_fsync, real_replace, real_rename = atomic.os.fsync, atomic.os.replace, atomic.os.rename
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                        real_fsync(fd)))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("rename", str(a))), real_replace(a, b)))
    monkeypatch.setattr(atomic.os, "rename", lambda a, b: (events.append(("rename", str(a))), real_rename(a, b)))
    atomic.atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("x"))
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert ".f.txt.tmp-" in events[0][1] and events[1][1] == events[0][1] and events[2][1] == str(tmp_path)
    events.clear()
    atomic.atomic_dir(tmp_path / "d", lambda tmp: (tmp / "a.pt").write_bytes(b"1"))
    renamed = next(i for i, e in enumerate(events) if e[0] == "rename")
    synced = {Path(p).name for kind, p in events[:renamed] if kind == "fsync"}
    assert "a.pt" in synced and any(".d.tmp-" in name for name in synced)
    assert events[-1] == ("fsync", str(tmp_path))  # the rename itself, after it


def test_a_new_run_refuses_a_directory_of_other_files(tmp_path):
    cfg = tiny_run(steps=1)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "samples.png").write_bytes(b"mine too")
    with pytest.raises(UserError, match="holds other files .*notes.txt"):
        train(cfg, _data(cfg), tmp_path, quiet=True)
    assert (tmp_path / "samples.png").read_bytes() == b"mine too" and not (tmp_path / "tensorboard").exists()
