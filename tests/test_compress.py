"""Bucket compression: merged blocks reproduce the original paths they were built from."""

from __future__ import annotations

import dataclasses
import json

from rpgan.errors import UserError
from rpgan.model.compress import merge_buckets
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import load_generator
from tests.conftest import TINY_MODELS

import pandas as pd
import pytest
import torch

LINEAR_FC = dataclasses.replace(TINY_MODELS["fc"], blocks=(3, 4, 3, 5, 2), fc_widths=(16, 24, 32, 40), linear=True)


def trained_like(cfg) -> Generator:
    """A generator whose BatchNorm holds non-trivial running statistics."""
    G = Generator(cfg).train()
    with torch.no_grad():
        for b in G.buckets:
            for p in b.parameters():
                p.add_(0.05 * torch.randn_like(p))
        for seed in range(3):
            G(*G.sample_latent(32, torch.Generator().manual_seed(seed)))
    return G.eval()


@pytest.mark.parametrize("first,last", [(2, 4), (1, 2), (0, 3)])
def test_merged_block_reproduces_its_original_path(first, last):
    G = trained_like(LINEAR_FC)
    small, tuples = merge_buckets(G, first, last, 7, torch.Generator().manual_seed(0))
    assert small.blocks == G.blocks[:first] + (7,) + G.blocks[last + 1 :]
    rest = G.sample_latent(7, torch.Generator().manual_seed(1))[0]
    original = rest.clone()
    original[:, first : last + 1] = tuples
    compressed = torch.cat([rest[:, :first], torch.arange(7)[:, None], rest[:, last + 1 :]], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(small(compressed), G(original), rtol=1e-4, atol=1e-5)


def test_compressed_generator_has_fewer_multiplies():
    G = trained_like(LINEAR_FC)
    small, _ = merge_buckets(G, 2, 4, 7, torch.Generator().manual_seed(0))
    assert [b.fc.weight.shape[1:] for b in small.buckets][-1] == (64, 24)  # one 24 -> 8x8 map
    assert len(small.buckets) == 3


def test_same_seed_same_products():
    G = trained_like(LINEAR_FC)
    a = merge_buckets(G, 2, 4, 5, torch.Generator().manual_seed(3))[1]
    b = merge_buckets(G, 2, 4, 5, torch.Generator().manual_seed(3))[1]
    assert torch.equal(a, b)


@pytest.mark.parametrize("cfg,first,last,message", [
    (dataclasses.replace(LINEAR_FC, linear=False), 2, 4, "have ReLUs"),
    (TINY_MODELS["resnet"], 1, 2, "fully-connected"),
    (LINEAR_FC, 3, 3, "two or more consecutive"),
    (LINEAR_FC, 3, 5, "two or more consecutive"),
])
def test_refusals(cfg, first, last, message):
    with pytest.raises(UserError, match=message):
        merge_buckets(Generator(cfg), first, last, 4, torch.Generator())


def test_cli_compress_gives_a_normal_checkpoint(tmp_path, rpgan):
    assert rpgan("train", "--preset", "mnist-fc", "--data", "digits-gray", "--blocks", "3,3,3,2,2",
                 "--batch", "8", "--steps", "2", "--out", tmp_path / "fc")[0] == 0
    assert rpgan("compress", "--ckpt", tmp_path / "fc", "--merge", "3-5", "--merged-blocks", "16",
                 "--out", tmp_path / "small")[0] == 0
    small, config, ckpt = load_generator(tmp_path / "small")
    assert config.model.blocks == (3, 3, 16) and config.model.fc_widths == (128, 256)
    merged = json.loads((ckpt / "merge.json").read_text())
    assert merged["merged_buckets"] == [3, 5] and len(merged["tuples"]) == 16
    big = load_generator(tmp_path / "fc")[0]
    path = torch.tensor([[1, 2, 5]])
    original = torch.tensor([[1, 2, *merged["tuples"][5]]])
    with torch.no_grad():
        torch.testing.assert_close(small(path), big(original), rtol=1e-4, atol=1e-5)
    assert rpgan("sample", "--ckpt", tmp_path / "small", "--out", tmp_path / "s.png")[0] == 0
    assert rpgan("info", "--ckpt", tmp_path / "small")[0] == 0
    assert rpgan("analyze", "--ckpt", tmp_path / "small", "--evaluations", "2", "--grids", "1",
                 "--per-bucket", "4", "--workers", "0", "--out", tmp_path / "an")[0] == 0
    summary = pd.read_parquet(tmp_path / "an" / "responsibility_summary")
    assert sorted(summary["layer"].unique()) == [1, 2, 3]  # the merged bucket is layer 3
    code, _, err = rpgan("compress", "--ckpt", tmp_path / "small", "--merge", "1-2", "--merged-blocks", "4",
                         "--out", tmp_path / "small")
    assert code == 2 and "already holds a run" in err
