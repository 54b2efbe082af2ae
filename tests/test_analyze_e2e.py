"""`rpgan analyze` end to end on a small trained checkpoint, in-process and on 2 Ray workers."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

from analysis.analyze import RESPONSIBILITY, SUMMARY
from rpgan.config import RunConfig
from rpgan.io.data import load_data
from rpgan.training.train import train
from tests.conftest import TINY_MODELS, compute_threads, tiny_run

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image


@pytest.fixture
def ckpt(tiny_ckpt) -> Path:
    return tiny_ckpt


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / name) for name in ("responsibility", "responsibility_summary")}


@pytest.mark.slow  # Ray workers and Inception
def test_two_ray_workers_write_parquet_plots_and_grids(rpgan, ckpt, ray_cluster, tmp_path):
    args = ["analyze", "--ckpt", ckpt, "--evaluations", 4, "--chunk", 2, "--grids", 2, "--seed", 3]
    code, out, err = rpgan(*args, "--workers", 2, "--out", tmp_path / "a")
    assert code == 0, err
    assert "mean D_(l->1)" in out
    for table in (RESPONSIBILITY, SUMMARY):
        files = list((tmp_path / "a" / table.name).glob("part-*.parquet"))
        assert len(files) == 1 and pq.read_schema(files[0]).equals(table.schema, check_metadata=False)
    long, summary = _tables(tmp_path / "a").values()
    assert len(long) == 4 * 3 * 5  # evaluations x buckets x distances
    assert set(long["distance"]) == {"semantic", "color", "color_r", "color_g", "color_b"}
    first = summary[summary["layer"] == 1]
    assert (first["ratio_mean"] == 1).all() and (first["ratio_std"] == 0).all()
    assert (long["spread"] >= 0).all() and long.loc[long["layer"] > 1, "ratio"].notna().all()
    grids = sorted((tmp_path / "a" / "frozen_paths").glob("path_*.png"))
    assert len(grids) == 2
    with Image.open(tmp_path / "a" / "responsibility.png") as plot:
        assert plot.size[0] > 600

    # the same seed gives the same numbers, bit for bit, in-process at the thread of a 1-CPU worker
    with compute_threads(1):
        assert rpgan(*args, "--workers", 0, "--out", tmp_path / "b")[0] == 0
    for name, table in _tables(tmp_path / "b").items():
        theirs = _tables(tmp_path / "a")[name]
        pd.testing.assert_frame_equal(table.drop(columns="created_at"), theirs.drop(columns="created_at"),
                                      check_exact=True)
    other = rpgan(*args[:-1], "4", "--workers", 0, "--out", tmp_path / "d")
    assert other[0] == 0
    assert not _tables(tmp_path / "d")["responsibility"]["spread"].equals(long["spread"])


@pytest.mark.slow  # Inception
def test_standard_gan_needs_noise_injection(rpgan, tmp_path):
    standard = dataclasses.replace(TINY_MODELS["resnet"], blocks=(1, 1, 1), input="gaussian")
    run = train(RunConfig(model=standard, train=tiny_run(steps=1).train, data="digits"),
                load_data("digits", 8, 3), tmp_path / "std", quiet=True)
    code, _, err = rpgan("analyze", "--ckpt", run, "--workers", 0, "--evaluations", 2, "--grids", 0)
    assert code == 2 and "--noise-injection" in err and len(err.strip().splitlines()) == 1
    code, out, err = rpgan("analyze", "--ckpt", run, "--workers", 0, "--evaluations", 2, "--grids", 1,
                           "--per-bucket", 3, "--noise-injection", "--noise-scales", "0.05,1", "--out", tmp_path / "n")
    assert code == 0, err
    # Figure 5: per scale, the base image and a row per layer of 3 perturbed images (64 px cells)
    grids = sorted(p.name for p in (tmp_path / "n" / "noise_injection").iterdir())
    assert grids == ["noise-0.05_path_0-0-0_z0.png", "noise-1_path_0-0-0_z0.png"]
    loud = Image.open(tmp_path / "n" / "noise_injection" / "noise-1_path_0-0-0_z0.png")
    assert loud.height == 4 * (64 + 2) + 2 and loud.width == 70 + 3 * (64 + 2) + 2
    cells = np.asarray(loud)[2 + 66:2 + 66 + 64, 72:72 + 3 * 66]  # layer 1's row: three different draws
    assert not np.array_equal(cells[:, :64], cells[:, 66:130])
    summary = pd.read_parquet(tmp_path / "n" / "responsibility_summary")
    assert set(summary["method"]) == {"noise-0.05", "noise-1"}
    spread = summary[summary["distance"] == "semantic"].groupby("method")["spread_mean"].mean()
    assert spread["noise-1"] > spread["noise-0.05"] > 0  # more noise, more change


@pytest.mark.parametrize("args, message", [
    (["--ckpt", "/nonexistent"], "does not exist"),
    (["--evaluations", "0"], "must be >= 1"),
    (["--noise-injection", "--noise-scales", "a,b"], "comma-separated numbers"),
])
def test_bad_input_is_one_line_and_exit_2(rpgan, ckpt, args, message):
    full = ["analyze", "--workers", 0, *(["--ckpt", ckpt] if "--ckpt" not in args else []), *args]
    code, _, err = rpgan(*full)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # a command in its own process
def test_a_killed_analysis_leaves_no_partial_file(ckpt, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rpgan.cli", "analyze", "--ckpt", str(ckpt), "--workers", "0", "--chunk", "1",
           "--evaluations", "50", "--grids", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:  # kill once it is mid-way through the evaluations
        if "task 2/" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not list(out.rglob("*.parquet")) and not list(out.rglob("*.tmp-*"))
    assert not (out / "responsibility.png").exists()
    for png in out.rglob("*.png"):  # what exists is whole
        with Image.open(png) as img:
            img.load()
