"""EigenGAN: the subspace, its orthogonality regulariser, the generator, training and analysis."""

from __future__ import annotations

import dataclasses

from analysis.responsibility import Draws, eigen_variations
from rpgan.config import ModelConfig
from rpgan.errors import UserError
from rpgan.io.data import load_data, to_uint8
from rpgan.io.images import render
from rpgan.model.eigengan import EigenGenerator, Subspace, orthogonality, orthogonality_loss
from rpgan.model.networks import build_generator
from rpgan.training.checkpoint import load_generator, new_training_state
from rpgan.training.loop import train_step
from rpgan.training.train import train
from tests.conftest import TINY_EIGENGAN, tiny_run

import pandas as pd
import pytest
import torch
from PIL import Image


def test_orthogonality_is_zero_exactly_for_an_orthonormal_basis():
    q, _ = torch.linalg.qr(torch.randn(50, 6, dtype=torch.float64))  # orthonormal columns
    assert orthogonality(q.T) < 1e-24
    assert orthogonality(2 * q.T) == pytest.approx(6 * 3**2)  # U^T U = 4I: six diagonal entries off by 3
    skew = q.T.clone()
    skew[1] += 0.5 * skew[0]
    assert orthogonality(skew) > 0.1
    assert orthogonality(Subspace(6, (4, 3, 3)).U) < 1e-10  # initialised orthonormal


def test_subspace_is_affine_in_each_coordinate_along_its_basis_vector():
    s = Subspace(3, (2, 4, 4))
    z = torch.randn(5, 3)
    moved = z.clone()
    moved[:, 1] += 2.0
    step = (s(moved) - s(z)).flatten(1)
    assert torch.allclose(step, (2.0 * s.L[1] * s.U[1]).expand(5, -1), atol=1e-5)
    assert torch.allclose(s(torch.zeros(1, 3)).flatten(), s.mu)


def test_generator_splits_z_into_noise_and_one_slice_per_layer():
    g = build_generator(TINY_EIGENGAN).eval()
    assert isinstance(g, EigenGenerator) and g.blocks == (1, 1, 1)
    paths, z = g.sample_latent(4, torch.Generator().manual_seed(0))
    assert z.shape == (4, 8 + 3 * 3) and (paths == 0).all()
    assert [g.coefficients(layer) for layer in (1, 2, 3)] == [slice(8, 11), slice(11, 14), slice(14, 17)]
    images = render(g, paths, z)
    assert images.shape == (4, 3, 16, 16) and images.abs().max() <= 1
    for layer in (1, 2, 3):  # each layer's coefficients change the image
        other = z.clone()
        other[:, g.coefficients(layer)] += 1.0
        assert (render(g, paths, other) - images).abs().max() > 1e-4


@pytest.mark.parametrize(("change", "message"), [
    ({"blocks": (2, 1, 1)}, "one block each"),
    ({"blocks": (1,)}, "at least 2 layers"),
    ({"input": "learned"}, "--input gaussian"),
    ({"eigen_dims": 0}, "--eigen-dims"),
])
def test_impossible_eigengan_configurations_are_refused(change, message):
    with pytest.raises(UserError, match=message):
        ModelConfig(**{**dataclasses.asdict(TINY_EIGENGAN), **change}).validate()


def test_training_keeps_the_bases_nearly_orthonormal_and_checkpoints_rebuild(tmp_path):
    config = tiny_run("eigengan", steps=4, orthogonality_weight=1.0)
    ckpt = train(config, load_data("digits", 16, 3), tmp_path, quiet=True)
    g, saved, _ = load_generator(ckpt)
    assert saved.model.arch == "eigengan" and isinstance(g, EigenGenerator)
    assert orthogonality_loss(g).item() < 1e-3
    assert (tmp_path / "traversals.png").is_file() and not (tmp_path / "frozen_path.png").exists()
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    assert (metrics["orthogonality"] >= 0).all() and (metrics["diversity"] == 0).all()


def test_the_regulariser_pulls_a_skewed_basis_back():
    g = build_generator(TINY_EIGENGAN)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, Subspace):
                m.U.mul_(1.5)
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    before = float(orthogonality_loss(g))
    for _ in range(20):
        opt.zero_grad()
        orthogonality_loss(g).backward()
        opt.step()
    assert float(orthogonality_loss(g)) < 0.1 * before


def test_eigen_variations_change_only_the_chosen_layer_coefficients():
    g = build_generator(TINY_EIGENGAN).eval()
    paths, z = g.sample_latent(2, torch.Generator().manual_seed(1))
    seeds = torch.arange(2 * 3 * 4).view(2, 3, 4)
    images = eigen_variations(g, Draws(paths, z, torch.zeros(2, 3, 4, dtype=torch.long), seeds))
    assert images.shape == (2, 3, 4, 3, 16, 16) and images.dtype == torch.uint8
    # image (e=1, layer 2, k=3) is z[1] with z_2 redrawn from its seed
    expected = z[1].clone()
    expected[g.coefficients(2)] = torch.randn(3, generator=torch.Generator().manual_seed(int(seeds[1, 1, 3])))
    assert torch.equal(images[1, 1, 3], to_uint8(render(g, paths[:1], expected[None]))[0])
    assert (images[:, :, 0] != images[:, :, 1]).any()


@pytest.mark.slow
def test_cli_trains_and_analyzes_an_eigengan(rpgan, tmp_path):
    run = tmp_path / "run"
    code, out, err = rpgan("train", "--preset", "eigengan-digits", "--steps", 2, "--batch", 4, "--width", 8,
                           "--out", run)
    assert code == 0, err
    assert "traversals.png" in out
    code, out, _ = rpgan("info", "--ckpt", run)
    assert code == 0 and "latent space z of 88 dimensions: noise 64 + 4 x 6" in out
    for args, message in [(["sample", "--path", "0,0,0,0"], "has no paths"),
                          (["extend", "--add-blocks", "1,1,1,1", "--out", tmp_path / "x"], "an EigenGAN has none"),
                          (["compress", "--merge", "1-2", "--merged-blocks", "2", "--out", tmp_path / "y"],
                           "fully-connected")]:
        code, _, err = rpgan(*args, "--ckpt", run)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    code, out, err = rpgan("analyze", "--ckpt", run, "--evaluations", 3, "--grids", 1, "--per-bucket", 5,
                           "--workers", 0, "--out", tmp_path / "a", "--noise-injection")
    assert code == 0, err
    summary = pd.read_parquet(tmp_path / "a" / "responsibility_summary")
    assert set(summary["method"]) == {"eigen", "noise-0.1", "noise-0.5"}
    assert sorted(summary["layer"].unique()) == [1, 2, 3, 4]
    eigen = summary[(summary["method"] == "eigen") & (summary["distance"] == "semantic")]
    assert (eigen["spread_mean"] > 0).all()
    with Image.open(tmp_path / "a" / "traversals" / "sample_0.png") as grid:
        assert grid.size[1] > 4 * 6 * 64  # a base row plus one row per layer x dimension


@pytest.mark.parametrize("weight", [0.0, 10.0])
def test_the_train_step_applies_the_regulariser_with_its_weight(weight):
    config = tiny_run("eigengan", lr=1e-2, d_steps=1, orthogonality_weight=weight)
    state = new_training_state(config, "cpu")
    with torch.no_grad():
        for m in state.generator.modules():
            if isinstance(m, Subspace):
                m.U.mul_(1.5)
    before = orthogonality_loss(state.generator).item()
    data = load_data("digits", 16, 3)
    for _ in range(5):
        losses = train_step(state, data, config.train, "cpu")
    after = orthogonality_loss(state.generator).item()
    assert losses["orthogonality"] > 0
    if weight:
        assert after < 0.5 * before  # pulled back towards orthonormal
    else:
        assert after > 0.9 * before  # nothing but the adversarial loss moves U
