"""`rpgan fid-stats` and `rpgan fid` end to end, in-process, on a small trained checkpoint."""

from __future__ import annotations

from analysis.results import SCHEMAS

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest


@pytest.fixture
def ckpt(tiny_ckpt):
    return tiny_ckpt


@pytest.mark.slow  # Inception on 180 images
def test_fid_stats_then_fid_writes_quality_and_prd(rpgan, ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("RPGAN_CACHE", str(tmp_path / "cache"))
    code, out, err = rpgan("fid-stats", "--data", "digits", "--image-size", 8, "--n", 60, "--workers", 0)
    assert code == 0, err
    stats = next((tmp_path / "cache" / "fid_stats").glob("digits-8px-3ch-60-seed0-*.npz"))
    with np.load(stats) as f:
        ref = f["features"]
    assert ref.shape == (60, 2048)

    args = ["fid", "--ckpt", ckpt, "--n", 60, "--reference-n", 60, "--workers", 0, "--out", tmp_path / "q"]
    code, out, err = rpgan(*args)
    assert code == 0, err
    assert f"fid_stats/{stats.name}" in out  # the cached reference was used
    quality = pd.read_parquet(tmp_path / "q" / "quality")
    assert len(quality) == 1 and quality["fid"][0] > 0
    assert 0 <= quality["prd_f8_recall"][0] <= 1 and 0 <= quality["prd_f1_8_precision"][0] <= 1
    for name in ("quality", "prd_curve"):
        part = next((tmp_path / "q" / name).glob("part-*.parquet"))
        assert pq.read_schema(part).equals(SCHEMAS[name], check_metadata=False)
    assert len(pd.read_parquet(tmp_path / "q" / "prd_curve")) == 1001
    assert (tmp_path / "q" / "prd.png").stat().st_size > 5000

    # the same command again: the same FID, and its part file is replaced, not duplicated
    assert rpgan(*args)[0] == 0
    again = pd.read_parquet(tmp_path / "q" / "quality")
    assert len(again) == 1 and again["fid"][0] == quality["fid"][0]


def test_unreadable_stats_file_is_a_one_line_error(rpgan, ckpt, tmp_path):
    bad = tmp_path / "stats.npz"
    bad.write_bytes(b"garbage")
    code, _, err = rpgan("fid", "--ckpt", ckpt, "--n", 10, "--stats", bad, "--workers", 0, "--no-prd")
    assert code == 2 and "delete the file" in err and len(err.strip().splitlines()) == 1
