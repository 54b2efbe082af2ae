"""Unit dissection: hooks retain and edit a bucket's output, ablating no unit changes nothing,
ablating units changes exactly those units, and `rpgan dissect` writes its tables and images."""

from __future__ import annotations

from analysis.dissection import ablation, ablation_effects, instrument, layers, unit_activations
from analysis.results import SCHEMAS
from rpgan.io.data import load_data
from rpgan.io.images import render
from rpgan.model.networks import Generator
from rpgan.model.paths import sample_paths
from rpgan.training.train import train
from tests.conftest import TINY_MODELS, tiny_run

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).float()  # a stand-in feature map for the semantic distance


@pytest.mark.parametrize("arch", ["resnet", "dcgan", "fc"])
def test_hooks_retain_and_edit_and_leave_no_trace(arch):
    g = Generator(TINY_MODELS[arch]).eval()
    paths = sample_paths(g.blocks, 5, torch.Generator().manual_seed(1))
    before = render(g, paths)
    acts = unit_activations(g, paths, None, 1)
    assert acts.shape[0] == 5 and acts.dim() == 2
    with instrument(g, 1, ablation(torch.arange(acts.shape[1]), torch.zeros(acts.shape[1]))) as kept:
        edited = render(g, paths)
    assert kept[0].abs().max() == 0  # what flowed on is the edited output
    assert not torch.equal(edited, before)
    assert torch.equal(render(g, paths), before)  # the hook is gone


def test_ablation_sets_exactly_the_chosen_units():
    x = torch.randn(2, 4, 3, 3)
    fill = torch.tensor([10.0, 11.0, 12.0, 13.0])
    y = ablation(torch.tensor([1, 3]), fill)(x)
    assert (y[:, 1] == 11.0).all() and (y[:, 3] == 13.0).all()
    assert torch.equal(y[:, [0, 2]], x[:, [0, 2]]) and not torch.equal(x[:, 1], y[:, 1])


def test_ablating_no_units_changes_nothing_and_ablating_some_does():
    g = Generator(TINY_MODELS["resnet"]).eval()
    paths = sample_paths(g.blocks, 6, torch.Generator().manual_seed(2))
    units = unit_activations(g, paths, None, 2).shape[1]
    none = [(layer, ablation(torch.tensor([], dtype=torch.long), torch.zeros(units))) for layer in layers(g)]
    assert ablation_effects(g, paths, None, none, _pixels).abs().max() == 0
    some = ablation_effects(g, paths, None, [(2, ablation(torch.arange(units // 2), torch.zeros(units)))], _pixels)
    assert some.shape == (1, 6, 2) and (some[0, :, 0] > 0).all()


def test_dissect_writes_tables_plot_and_unit_strips(rpgan, tmp_path):
    ckpt = train(tiny_run(steps=2), load_data("digits", 8, 3), tmp_path / "run", quiet=True)
    code, out, err = rpgan("dissect", "--ckpt", ckpt, "--n", 6, "--units", 2, "--chunk", 4, "--strips", 2,
                           "--workers", 0, "--out", tmp_path / "d")
    assert code == 0, err
    assert "ablating the top 2 units" in out
    units = pq.read_table(tmp_path / "d" / "unit_activation")
    assert units.schema.equals(SCHEMAS["unit_activation"], check_metadata=False)
    u = units.to_pandas()
    assert sorted(u.layer.unique()) == [1, 2]  # buckets 1..n-1 of a 3-bucket generator
    for _, layer in u.groupby("layer"):
        assert sorted(layer["rank"]) == list(range(len(layer)))
        assert (layer.sort_values("rank")["mean"].diff().dropna() <= 0).all()  # ranked by mean activation
    effect = pq.read_table(tmp_path / "d" / "ablation_effect")
    assert effect.schema.equals(SCHEMAS["ablation_effect"], check_metadata=False)
    e = effect.to_pandas()
    assert (e[e.layer == 1].ratio_mean == 1.0).all() and (e.effect_mean >= 0).all()
    assert Image.open(tmp_path / "d" / "dissection.png").size[0] > 600
    for layer in (1, 2):  # a row per shown unit, each row as tall as an image cell
        width, height = Image.open(tmp_path / "d" / "units" / f"layer_{layer}.png").size
        assert width > height > 2 * 32
    code, _, err = rpgan("dissect", "--ckpt", ckpt, "--fill", "max", "--workers", 0)
    assert code == 2 and err.count("\n") == 1
