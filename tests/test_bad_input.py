"""Hostile input, refused in one line before anything is allocated or written (issue 15: bounded
configuration values, malformed config.json, corrupt Parquet and .npz files)."""

from __future__ import annotations

import dataclasses
import json
import sys
import types

from analysis.analyze import AnalyzeConfig
from analysis.deformator import DirectionsConfig
from analysis.dissect import DissectConfig
from rpgan.config import MAX_PARAMETERS, ModelConfig, RunConfig, TrainConfig
from rpgan.errors import UserError
from rpgan.io.run import Folder, Run
from rpgan.model.compress import merge_buckets
from rpgan.model.networks import Generator, build_discriminator, build_generator
from rpgan.model.size import parameter_counts
from rpgan.presets import PRESETS
from tests.conftest import TINY_EIGENGAN, TINY_MODELS, _free_port, tiny_run

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

MNIST_FC_COMPRESSED = dataclasses.replace(PRESETS["mnist-fc"].model, blocks=(32, 32, 128), fc_widths=(128, 256),
                                          plain_buckets=(0, 1, 2))  # bucket 3-5 merged into 128 blocks (4.4)
COUNTED = {**TINY_MODELS, "eigengan": TINY_EIGENGAN, "mnist-fc-compressed": MNIST_FC_COMPRESSED,
           "lsun": PRESETS["lsun"].model, "digits": PRESETS["digits"].model,
           "fixed-input": dataclasses.replace(TINY_MODELS["resnet"], input="fixed", blocks=(3, 4, 2, 2)),
           "dcgan-64": ModelConfig(arch="dcgan", image_size=64, blocks=(2,) * 5, width=8, d_arch="dcgan", d_width=8)}


@pytest.mark.parametrize("name", list(COUNTED))
def test_parameter_counts_match_the_built_models(name):
    """The bound on parameters is computed without building anything; it must count what gets built."""
    m = COUNTED[name]
    with torch.device("meta"):  # shapes only: nothing allocated
        built = build_generator(m), build_discriminator(m)
    assert parameter_counts(m) == tuple(sum(p.numel() for p in module.parameters()) for module in built)


def test_every_preset_and_the_papers_configurations_are_admitted():
    for preset in PRESETS.values():
        preset.model.validate(), preset.train.validate()
    MNIST_FC_COMPRESSED.validate()
    assert sum(parameter_counts(PRESETS["cifar10"].model)) < MAX_PARAMETERS / 5


@pytest.mark.parametrize("change, message", [
    ({"width": 5000}, "--width must be 1..4096"),
    ({"d_width": 0}, "--d-width must be 1..4096"),
    ({"z_dim": 10**9}, "--z-dim must be 1..4096"),
    ({"image_size": 4096}, "--image-size must be 1..1024"),
    ({"blocks": (10**6,) * 5}, "at most 10000 blocks"),
    ({"blocks": (1,) * 1000}, "1..64 buckets"),
    ({"width": 1024}, r"2,477\.3M generator .* over rpgan's limit of 1,000M"),  # CIFAR-10 at width 1024
    ({"d_width": 4096}, r"1,073\.9M discriminator"),
    ({"width": 1.5}, "model.width must be an integer, got 1.5"),
    ({"width": "abc"}, "model.width must be an integer, got 'abc'"),
    ({"width": True}, "model.width must be an integer"),
    ({"blocks": (40, "a", 40, 40, 40)}, "model.blocks must be a list of integers"),
    ({"linear": "no"}, "model.linear must be true or false"),
    ({"arch": "gan"}, "model.arch must be one of resnet, dcgan, fc, eigengan"),
])
def test_model_values_are_bounded_and_typed(change, message):
    with pytest.raises(UserError, match=message):
        dataclasses.replace(PRESETS["cifar10"].model, **change).validate()


@pytest.mark.parametrize("change, message", [
    ({"batch": 10**7}, "--batch must be 1..65536"),
    ({"d_steps": 10**6}, "--d-steps must be 1..1000"),
    ({"sample_every": -1}, "--sample-every must be 0.."),
    ({"seed": -3}, "--seed must be 0.."),
    ({"lr": float("nan")}, "train.lr must be a finite number"),
    ({"betas": (0.5,)}, "train.betas must be a list of 2 finite numbers"),
    ({"betas": (0.5, 1.5)}, r"betas in \[0, 1\)"),
    ({"steps": 2.5}, "train.steps must be an integer"),
    ({"data_workers": 65}, "--data-workers must be 0..64"),
    ({"precision": "fp8"}, "train.precision must be one of fp32, bf16, fp16"),
    ({"compile": True, "loss": "wgan-gp"}, "--compile cannot train with --loss wgan-gp: .* drop --compile"),
])
def test_train_values_are_bounded_and_typed(change, message):
    with pytest.raises(UserError, match=message):
        dataclasses.replace(TrainConfig(), **change).validate()


def test_malformed_run_configurations_are_one_line():
    good = json.loads(tiny_run().to_json())
    assert RunConfig.from_json(tiny_run().to_json()) == RunConfig.from_json(tiny_run().to_json().encode())
    for data, message in [
        (b"\x80\x81{}", "UnicodeDecodeError"), (b"[" * 100_000, "RecursionError"),
        ("[1, 2]", "top level is a JSON list"), ("3", "top level is a JSON int"),
        (json.dumps({**good, "bogus": 1}), "unexpected keyword argument 'bogus'"),
        (json.dumps({**good, "train": "fast"}), "TrainConfig is a JSON str"),
        (json.dumps({**good, "data": 5}), "data must be a string"),
        (json.dumps({**good, "dataset_size": -1}), "dataset_size must be non-negative"),
        (json.dumps({**good, "version": "1"}), "config version \"1\" is not supported"),
    ]:
        with pytest.raises(UserError, match=message) as e:
            RunConfig.from_json(data)
        assert "\n" not in str(e.value)


def test_a_ray_runs_config_that_is_not_utf8_is_one_line(tmp_path):
    store = Run(str(tmp_path), "run")
    store.write_bytes("run.json", b"\x80\x81 not utf-8")
    with pytest.raises(UserError, match="run.json: config.json is not an rpgan run configuration"):
        store.saved_config()


def test_a_saved_sweep_plan_that_is_garbage_is_one_line(tmp_path, monkeypatch):
    from sweeps.commands import _saved_plan

    monkeypatch.setitem(sys.modules, "sweeps.runner", types.SimpleNamespace(PLAN="sweep.json"))  # no Ray import
    folder = Folder(str(tmp_path), "s")
    for data in (b"\xff\xfe\xfa\xfb", b"[" * 100_000, b"[]"):
        folder.write_bytes("sweep.json", data)
        with pytest.raises(UserError, match="sweep.json is not a sweep plan"):
            _saved_plan(folder)


def _trials_part(folder: Folder, name: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    import io

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    folder.write_bytes(f"trials/{name}", buffer.getvalue())


def test_corrupt_sweep_results_are_one_line(tmp_path):
    """`rpgan results`, `results --best` and `sweep --resume` all read the trials table here."""
    from sweeps.commands import _best
    from sweeps.results import SCHEMAS, finished, read_table

    folder = Folder(str(tmp_path), "s")
    _trials_part(folder, "part-a.parquet", [{"trial": "a", "status": "ok", "fid": 3.0, "ckpt": "/c/a"}],
                 SCHEMAS["trials"])
    _trials_part(folder, "part-b.parquet", [{"trial": "b", "status": "ok", "fid": 2.0, "ckpt": "/c/b"}])  # 4 columns
    assert set(finished(folder)) == {"a", "b"} and _best(folder) == "/c/b"  # missing columns read as nulls
    assert read_table(folder, "trials").columns.tolist() == SCHEMAS["trials"].names
    good = tmp_path / "s" / "trials" / "part-a.parquet"
    for content in (b"garbage", good.read_bytes()[:-20]):
        folder.write_bytes("trials/part-c.parquet", content)
        for read in (finished, _best, lambda f: read_table(f, "trials")):
            with pytest.raises(UserError, match=r"s/trials/part-c.parquet is unreadable .* delete trials/part-c"):
                read(folder)
    _trials_part(folder, "part-c.parquet", [{"trial": "c", "fid": "low"}])  # Parquet, a column of the wrong type
    with pytest.raises(UserError, match="part-c.parquet is unreadable"):
        finished(folder)


def test_corrupt_analysis_tables_and_fid_statistics_are_one_line(tmp_path):
    from analysis.compare import collect
    from analysis.fid import reference_features

    (tmp_path / "responsibility_summary").mkdir()
    (tmp_path / "responsibility_summary" / "part-x.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="responsibility_summary is unreadable"):
        collect([tmp_path])
    np.savez(tmp_path / "stats.npz", features=np.zeros((10, 2048), np.float32))
    raw = (tmp_path / "stats.npz").read_bytes()
    for content in (raw[: len(raw) // 2], b"PK\x03\x04 truncated"):
        (tmp_path / "stats.npz").write_bytes(content)
        with pytest.raises(UserError, match="FID statistics .* are unreadable"):
            reference_features("digits", 8, 3, None, fan=None, out=tmp_path / "stats.npz")


@pytest.mark.parametrize("make", [
    lambda: AnalyzeConfig(evaluations=10**7).validate(),
    lambda: AnalyzeConfig(grids=10**6).validate(),
    lambda: AnalyzeConfig(noise_scales=(float("nan"),)).validate(),
    lambda: DissectConfig(n=10**9).validate(),
    lambda: DissectConfig(strips=10**6).validate(),
    lambda: DirectionsConfig(directions=10**6).validate(TINY_MODELS["resnet"].n_buckets),
    lambda: DirectionsConfig(max_shift=float("inf")).validate(TINY_MODELS["resnet"].n_buckets),
])
def test_analysis_counts_are_bounded(make):
    with pytest.raises(UserError):
        make()


def test_compression_refuses_an_absurd_block_count_before_drawing_it():
    linear = dataclasses.replace(TINY_MODELS["fc"], linear=True)
    with pytest.raises(UserError, match=r"--merged-blocks must be 1..10000, got 1000000000"):
        merge_buckets(Generator(linear), 0, 2, 10**9, torch.Generator())


def test_a_ray_address_where_nothing_answers_is_refused_at_once():
    """Ray's driver retries an address where nothing listens for over 10 minutes; rpgan first asks
    whether anything accepts a connection there, and says what to check."""
    import socket

    from rpgan.distributed.ray_session import check_answers

    for address in (f"127.0.0.1:{_free_port()}", f"ray://127.0.0.1:{_free_port()}", "head-without-port"):
        with pytest.raises(UserError, match="nothing answers at Ray address .*check --address / RAY_ADDRESS"):
            check_answers(address)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_answers(f"127.0.0.1:{listening.getsockname()[1]}")  # something answers: Ray's to judge
        check_answers(f"ray://127.0.0.1:{listening.getsockname()[1]}")
    for word in ("auto", "local"):  # Ray's names, not addresses: Ray resolves them as before
        check_answers(word)


@pytest.mark.slow  # a process of its own: the tests' process may already be connected to a cluster
def test_a_command_given_a_ray_address_where_nothing_answers_is_one_line_and_exit_2(tiny_ckpt, tmp_path):
    import os
    import subprocess
    from pathlib import Path

    rpgan = str(Path(sys.executable).with_name("rpgan"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([rpgan, "analyze", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "out"),
                           "--address", f"127.0.0.1:{_free_port()}"], env=env, capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("rpgan: nothing answers"), done.stderr
    assert not (tmp_path / "out").exists()
