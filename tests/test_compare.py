"""`rpgan compare`: every method's per-layer responsibility, for an RPGAN and an EigenGAN, in
one Parquet table and one plot."""

from __future__ import annotations

from pathlib import Path

from analysis.results import SCHEMAS
from rpgan.io.data import load_data
from rpgan.training.train import train
from tests.conftest import tiny_run

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> dict[str, Path]:
    """Per model, the checkpoint of a 2-step run: a tiny RPGAN and a tiny EigenGAN."""
    root = tmp_path_factory.mktemp("compare")
    return {"resnet": train(tiny_run("resnet", steps=2), load_data("digits", 8, 3), root / "rpgan", quiet=True),
            "eigengan": train(tiny_run("eigengan", steps=2), load_data("digits", 16, 3), root / "eigen", quiet=True)}


@pytest.mark.slow  # two analyses and dissections with Inception
def test_one_table_and_plot_compare_all_methods_layer_by_layer(rpgan, analysed, tmp_path):
    dirs = []
    for name, ckpt in analysed.items():
        out = tmp_path / name
        code, _, err = rpgan("analyze", "--ckpt", ckpt, "--evaluations", 3, "--grids", 0, "--noise-injection",
                             "--noise-scales", "0.5", "--workers", 0, "--out", out)
        assert code == 0, err
        code, _, err = rpgan("dissect", "--ckpt", ckpt, "--n", 6, "--units", 2, "--strips", 0,
                             "--workers", 0, "--out", out)
        assert code == 0, err
        dirs.append(out)

    code, out, err = rpgan("compare", *dirs, "--out", tmp_path / "c")
    assert code == 0, err
    assert "semantic ratio to layer 1" in out
    files = list((tmp_path / "c" / "comparison").glob("part-*.parquet"))
    assert len(files) == 1 and pq.read_schema(files[0]).equals(SCHEMAS["comparison"], check_metadata=False)
    rows = pd.read_parquet(tmp_path / "c" / "comparison")
    assert set(rows["family"]) == {"RPGAN buckets", "EigenGAN dimensions", "noise injection", "unit ablation"}
    assert set(rows["distance"]) == {"semantic", "color"}
    layers = rows.groupby(["arch", "method"])["layer"].agg(lambda s: sorted(set(s)))
    assert layers["resnet", "buckets"] == [1, 2, 3] and layers["resnet", "unit-ablation-top2-mean"] == [1, 2]
    assert layers["eigengan", "eigen"] == [1, 2, 3] and layers["eigengan", "unit-ablation-top2-mean"] == [1, 2, 3]
    first = rows[(rows["layer"] == 1) & rows["family"].isin(["RPGAN buckets", "EigenGAN dimensions"])]
    assert (first["ratio_mean"] == 1).all()
    with Image.open(tmp_path / "c" / "comparison.png") as plot:
        assert plot.size[0] > 1000

    again = rpgan("compare", *dirs, "--out", tmp_path / "c")  # the same inputs replace their part
    assert again[0] == 0 and len(list((tmp_path / "c" / "comparison").glob("part-*.parquet"))) == 1


def test_a_directory_without_tables_is_refused_with_one_line(rpgan, tmp_path):
    code, _, err = rpgan("compare", tmp_path, "--out", tmp_path / "c")
    assert code == 2 and "run rpgan analyze or rpgan dissect" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
