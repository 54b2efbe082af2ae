"""Latent directions: the deformator stays orthonormal while it learns, an input shift moves
exactly one bucket's input and leaves no trace, and `rpgan directions` writes its results."""

from __future__ import annotations

import dataclasses

from analysis.deformator import Deformator, DirectionsConfig, input_scale, shifted_input, train_directions
from analysis.directions import DIRECTIONS
from rpgan.model.networks import Generator
from tests.conftest import TINY_MODELS

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch


def test_directions_stay_orthonormal_while_learning():
    d = Deformator(16, 5)
    opt = torch.optim.Adam(d.parameters(), lr=0.1)
    for _ in range(20):
        loss = (d.directions() * torch.randn(16, 5)).sum() ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = d.directions()
    assert torch.allclose(q.T @ q, torch.eye(5), atol=1e-5)
    shifts = d.shift(torch.tensor([0, 4]), torch.tensor([2.0, -3.0]))  # scale 1: |shift| = |eps|
    assert torch.allclose(shifts.norm(dim=1), torch.tensor([2.0, 3.0]))


def test_a_shift_moves_one_bucket_input_and_leaves_no_trace():
    g = Generator(dataclasses.replace(TINY_MODELS["resnet"], input="gaussian")).eval()
    paths, z = g.sample_latent(3, torch.Generator().manual_seed(0))
    before = g(paths, z)
    assert input_scale(g, 1)[0] == g.cfg.z_dim  # bucket 1's input is z itself
    with shifted_input(g, 1, torch.zeros(3, g.cfg.z_dim)):
        assert torch.equal(g(paths, z), before)
    shift = torch.zeros(3, g.cfg.z_dim)
    shift[:, 0] = 3.0
    with shifted_input(g, 1, shift):
        moved = g(paths, z)
    assert torch.allclose(moved, g(paths, z + shift), atol=1e-6)  # a shift of z is a shift of the input
    assert torch.equal(g(paths, z), before)


def test_training_runs_and_reports_history():
    g = Generator(TINY_MODELS["resnet"])
    cfg = DirectionsConfig(bucket=2, directions=3, steps=4, batch=6)
    deformator, reconstructor, history = train_directions(g, cfg, quiet=True)
    assert deformator.weight.shape == (input_scale(g, 2)[0], 3) and history[-1]["step"] == 4
    assert not any(p.requires_grad for p in g.parameters())  # the generator stayed frozen


@pytest.mark.slow  # Inception
def test_directions_command_writes_table_weights_and_traversals(rpgan, tiny_ckpt, tmp_path):
    ckpt = tiny_ckpt
    code, out, err = rpgan("directions", "--ckpt", ckpt, "--bucket", 2, "--directions", 3, "--steps", 3,
                           "--batch", 4, "--workers", 0, "--out", tmp_path / "d")
    assert code == 0, err
    assert "reconstructor accuracy" in out
    table = pq.read_table(tmp_path / "d" / "directions")
    assert table.schema.equals(DIRECTIONS.schema, check_metadata=False)
    rows = table.to_pandas()
    assert rows.direction.tolist() == [0, 1, 2] and rows.accuracy.between(0, 1).all()
    assert (rows.semantic_spread > 0).all()
    saved = torch.load(tmp_path / "d" / "directions.pt", weights_only=True)
    q = saved["directions"]
    assert torch.allclose(q.T @ q, torch.eye(3), atol=1e-5) and int(saved["bucket"]) == 2
    assert (tmp_path / "d" / "directions.png").is_file() and len(list((tmp_path / "d" / "traversals").iterdir())) == 3
    code, _, err = rpgan("directions", "--ckpt", ckpt, "--bucket", 9, "--workers", 0)
    assert code == 2 and "--bucket must be 1..3" in err


@pytest.mark.slow
def test_directions_learned_on_a_ray_worker_match_in_process(rpgan, tiny_ckpt, ray_cluster, tmp_path):
    args = ["directions", "--ckpt", tiny_ckpt, "--directions", 2, "--steps", 3, "--batch", 4, "--seed", 2]
    assert rpgan(*args, "--workers", 0, "--out", tmp_path / "here")[0] == 0
    code, _, err = rpgan(*args, "--workers", 1, "--out", tmp_path / "ray")
    assert code == 0, err
    here, there = (pq.read_table(tmp_path / d / "directions").to_pandas() for d in ("here", "ray"))
    pd.testing.assert_series_equal(here.final_loss, there.final_loss, rtol=1e-4)
    pd.testing.assert_series_equal(here.semantic_spread, there.semantic_spread, rtol=1e-3)
