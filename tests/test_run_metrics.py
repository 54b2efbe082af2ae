"""Every run writes its metrics per logged step to metrics.parquet (docs/results.md) and to
TensorBoard; resuming a run continues them without losing or repeating a step."""

from __future__ import annotations

import dataclasses
import struct

from rpgan.errors import UserError
from rpgan.io.data import load_data
from rpgan.io.run import METRICS_FILE
from rpgan.training.checkpoint import load_generator
from rpgan.training.run_log import SCHEMA, read_rows
from rpgan.training.train import train
from tests.conftest import tiny_run

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tensorboardX.proto.event_pb2 import Event


def tensorboard_events(folder) -> list[Event]:
    """Every event in the event files under folder (TFRecord framing)."""
    events = []
    for file in sorted(folder.glob("events.out.tfevents.*")):
        raw, at = file.read_bytes(), 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at:at + 8])
            events.append(Event.FromString(raw[at + 12:at + 12 + length]))
            at += 12 + length + 4
    return events


def tensorboard_scalars(folder) -> dict[str, list[int]]:
    """tag -> steps of every summary value (scalars, images, text) under folder."""
    found: dict[str, list[int]] = {}
    for event in tensorboard_events(folder):
        for value in event.summary.value:
            found.setdefault(value.tag, []).append(event.step)
    return found


def test_metrics_survive_a_resume_exactly_once(tmp_path):
    config = tiny_run(steps=6, log_every=2, checkpoint_every=4)
    data = load_data("digits", config.model.image_size, config.model.channels)
    run = tmp_path / "run"
    train(config, data, run, quiet=True)
    first = pq.read_table(run / "metrics.parquet")
    assert first.schema.equals(SCHEMA, check_metadata=False)
    assert first.column("step").to_pylist() == [2, 4, 6]

    longer = tiny_run(steps=10, log_every=2, checkpoint_every=4)
    train(longer, data, run, resume=True, quiet=True)
    table = pq.read_table(run / "metrics.parquet")
    assert table.column("step").to_pylist() == [2, 4, 6, 8, 10]
    assert table.slice(0, 3).column("d_loss").to_pylist() == first.column("d_loss").to_pylist()
    assert set(table.column("workers").to_pylist()) == {1} and set(table.column("run_id").to_pylist()) == {"run"}
    assert min(table.column("images_per_s").to_pylist()) > 0
    # the checkpoint carries the rows up to its step: what a resume after a crash starts from
    ckpt_rows = pq.read_table(run / "checkpoints" / "step_00000008" / "metrics.parquet").column("step").to_pylist()
    assert ckpt_rows == [2, 4, 6, 8]

    scalars = tensorboard_scalars(run / "tensorboard")
    assert {"train/d_loss", "train/g_loss", "train/diversity", "train/images_per_s"} <= set(scalars)
    assert sorted(set(scalars["train/d_loss"])) == [2, 4, 6, 8, 10]


def test_tensorboard_holds_each_step_once_after_a_resume_from_an_older_checkpoint(tmp_path):
    """A run killed after logging steps past its last checkpoint (here: the newest checkpoint
    lost) resumes from the older one: TensorBoard is trimmed as metrics.parquet is, so the steps
    logged again appear once."""
    import shutil

    data = load_data("digits", 8, 3)
    run = tmp_path / "run"
    train(tiny_run(steps=6, log_every=2, checkpoint_every=4), data, run, quiet=True)
    shutil.rmtree(run / "checkpoints" / "step_00000006")  # killed after logging 6, before its checkpoint
    train(tiny_run(steps=8, log_every=2, checkpoint_every=4), data, run, resume=True, quiet=True)
    scalars = tensorboard_scalars(run / "tensorboard")
    assert scalars["train/d_loss"] == [2, 4, 6, 8]
    assert pq.read_table(run / "metrics.parquet").column("step").to_pylist() == [2, 4, 6, 8]


def test_tensorboard_keeps_what_was_logged_up_to_the_checkpoint_a_run_resumes_from(tmp_path):
    """Trimmed to the checkpoint's step, not to its last metrics row: a checkpoint older than any
    row (log_every 3, a checkpoint at 2) keeps the grids of steps 1 and 2, each once."""
    import shutil

    data = load_data("digits", 8, 3)
    run = tmp_path / "run"
    config = tiny_run(steps=4, log_every=3, checkpoint_every=2, sample_every=1)
    train(config, data, run, quiet=True)
    shutil.rmtree(run / "checkpoints" / "step_00000004")
    train(config, data, run, resume=True, quiet=True)
    scalars = tensorboard_scalars(run / "tensorboard")
    assert scalars["samples"] == [1, 2, 3, 4] and scalars["train/d_loss"] == [3, 4]


def test_a_resumed_run_computes_what_an_uninterrupted_one_does(tmp_path):
    data = load_data("digits", 8, 3)
    whole = tmp_path / "whole"
    train(tiny_run(steps=6, log_every=1, checkpoint_every=6), data, whole, quiet=True)
    parts = tmp_path / "parts"
    train(tiny_run(steps=3, log_every=1, checkpoint_every=3), data, parts, quiet=True)
    train(tiny_run(steps=6, log_every=1, checkpoint_every=3), data, parts, resume=True, quiet=True)
    losses = [pq.read_table(run / "metrics.parquet").column("d_loss").to_pylist() for run in (whole, parts)]
    assert losses[0] == losses[1]


def test_a_corrupt_metrics_file_is_a_user_error(tmp_path):
    """train --resume reads the checkpoint's metrics.parquet: garbage there is a UserError (which
    makes resuming fall back to an older checkpoint), never a pyarrow traceback."""
    good = pa.Table.from_pylist([{"step": 2, "run_id": "r"}], schema=SCHEMA)
    pq.write_table(good, tmp_path / METRICS_FILE)
    assert [r["step"] for r in read_rows(tmp_path, 10)] == [2]
    raw = (tmp_path / METRICS_FILE).read_bytes()
    for content in (b"garbage", raw[: len(raw) // 2], raw[:-12]):
        (tmp_path / METRICS_FILE).write_bytes(content)
        with pytest.raises(UserError, match="metrics.parquet is corrupt"):
            read_rows(tmp_path, 10)
    for table in (pa.table({"step": ["two"]}), pa.table({"loss": [1.0]})):  # Parquet, but not our columns
        pq.write_table(table, tmp_path / METRICS_FILE)
        with pytest.raises(UserError, match="metrics.parquet is corrupt"):
            read_rows(tmp_path, 10)


@pytest.mark.slow  # a training with FID twice over: `make test` only
def test_fid_during_training_is_a_column_measured_exactly_once_across_a_resume(tmp_path, rpgan):
    config = tiny_run(steps=6, log_every=2, checkpoint_every=4, sample_every=3, eval_every=3, eval_samples=6)
    data = load_data("digits", config.model.image_size, config.model.channels)
    run = tmp_path / "run"
    train(config, data, run, quiet=True)
    rows = pq.read_table(run / "metrics.parquet").to_pylist()
    # an evaluated step is always logged: 3 joins the log_every rows
    assert [r["step"] for r in rows] == [2, 3, 4, 6]
    assert [r["step"] for r in rows if r["fid"] is not None] == [3, 6]
    assert all(r["fid"] > 0 and r["eval_time_s"] > 0 for r in rows if r["fid"] is not None)
    assert all(r["prd_f8_recall"] != r["prd_f8_recall"] for r in rows if r["fid"] is not None)  # nan: no --eval-prd

    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=9))
    train(longer, data, run, resume=True, quiet=True)
    resumed = pq.read_table(run / "metrics.parquet").to_pylist()
    assert [r["step"] for r in resumed if r["fid"] is not None] == [3, 6, 9]
    assert [r["fid"] for r in resumed[:4]] == [r["fid"] for r in rows]

    scalars = tensorboard_scalars(run / "tensorboard")
    assert sorted(set(scalars["quality/fid"])) == [3, 6, 9]
    assert {"samples", "config/text_summary", "_hparams_/experiment"} <= set(scalars)

    code, out, err = rpgan("curves", "--run", run)
    assert code == 0 and out.strip() == f"{run}/curves.png" and (run / "curves.png").stat().st_size > 10_000, err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.parquet").write_bytes(b"PAR1 not really")
    code, _, err = rpgan("curves", "--run", tmp_path / "broken")
    assert code == 2 and "is unreadable" in err and len(err.strip().splitlines()) == 1

    # the same seed gives the same curve, also when the steps are named (eval_at: a sweep's ASHA rungs)
    again = tmp_path / "again"
    train(dataclasses.replace(config, train=dataclasses.replace(config.train, eval_every=0, eval_at=(3, 6))),
          data, again, quiet=True)
    assert [r["fid"] for r in pq.read_table(again / "metrics.parquet").to_pylist()] == [r["fid"] for r in rows]
    code, _, err = rpgan("curves", "--run", run, "--run", again)  # two runs, one plot: needs --out
    assert code == 2 and "give --out" in err
    code, out, err = rpgan("curves", "--run", run, "--run", again, "--out", tmp_path / "both.png")
    assert code == 0 and (tmp_path / "both.png").stat().st_size > 10_000, err
    # and evaluating changes nothing that is trained
    plain = dataclasses.replace(config, train=dataclasses.replace(config.train, eval_every=0))
    train(plain, data, tmp_path / "plain", quiet=True)
    a, b = (load_generator(tmp_path / name)[0].state_dict() for name in ("again", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_without_evaluation_the_quality_columns_are_empty(tmp_path):
    config = tiny_run(steps=2, log_every=1)
    run = tmp_path / "run"
    train(config, load_data("digits", config.model.image_size, config.model.channels), run, quiet=True)
    table = pq.read_table(run / "metrics.parquet")
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.column("fid").null_count == table.num_rows == 2
