"""Losses against direct computations on small tensors."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

from rpgan.model.networks import Generator
from rpgan.training.losses import d_loss, diversity_loss, diversity_term, g_loss, gradient_penalty
from tests.conftest import TINY_MODELS

import pytest
import torch


def all_pairs_diversity(w: torch.Tensor) -> torch.Tensor:
    """The paper's formula written literally: -sum over ordered pairs i != j of MSE(w_i/s, w_j/s)."""
    s = w.std(unbiased=False)
    total = torch.zeros(())
    for i, j in itertools.permutations(range(len(w)), 2):
        total = total + torch.nn.functional.mse_loss(w[i] / s, w[j] / s)
    return -total


@pytest.mark.parametrize("shape", [(2, 5), (4, 3, 2, 3, 3), (7, 11)])
def test_diversity_term_equals_all_pairs(shape):
    w = torch.randn(*shape, dtype=torch.float64) * 0.3 + torch.randn(shape[1:], dtype=torch.float64)
    torch.testing.assert_close(diversity_term(w), all_pairs_diversity(w), rtol=1e-9, atol=1e-9)


def test_diversity_gradient_equals_all_pairs():
    w1 = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    diversity_term(w1).backward()
    all_pairs_diversity(w2).backward()
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-9, atol=1e-9)


def test_diversity_is_zero_for_one_block_or_identical_blocks():
    assert diversity_term(torch.randn(1, 10)) == 0
    same = torch.randn(1, 4).repeat(3, 1)
    assert diversity_term(same).abs() < 1e-6
    assert not torch.isnan(diversity_term(torch.zeros(3, 4)))


def test_diversity_loss_sums_every_bucket_parameter():
    G = Generator(TINY_MODELS["resnet"])
    expected = sum(all_pairs_diversity(p.detach()) for b in G.buckets for p in b.parameters()
                   if len(p) > 1 and p.std() > 0)
    torch.testing.assert_close(diversity_loss(G).detach(), expected, rtol=1e-4, atol=1e-3)
    assert diversity_loss(G) < 0


def test_hinge_and_wgan_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    # hinge: mean(relu(1 - real)) + mean(relu(1 + fake)) = 0.25 + 0.5
    assert d_loss("hinge", real, fake).item() == pytest.approx(0.75)
    assert d_loss("wgan-gp", real, fake).item() == pytest.approx(-1.5 - 1.25)
    assert g_loss(fake).item() == pytest.approx(1.5)


def test_gradient_penalty_of_a_linear_critic():
    """For D(x) = <a, x>, the gradient norm is |a| everywhere: penalty (|a| - 1)^2."""
    a = torch.randn(1, 3, 4, 4)
    critic = lambda x: (x * a).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((a.norm().item() - 1) ** 2, rel=1e-5)


@pytest.mark.parametrize("arch,loss,precision", [("resnet", "hinge", "bf16"), ("dcgan", "wgan-gp", "bf16"),
                                                ("fc", "hinge", "bf16"), ("resnet", "hinge", "fp16"),
                                                ("dcgan", "wgan-gp", "fp16")])
def test_half_precision_steps_stay_finite_and_keep_fp32_weights(arch, loss, precision):
    from rpgan.io.data import load_data
    from rpgan.training.checkpoint import new_training_state
    from rpgan.training.loop import train_step
    from tests.conftest import tiny_run

    cfg = tiny_run(arch, loss=loss, precision=precision)
    state = new_training_state(cfg, "cpu")
    data = load_data("digits", cfg.model.image_size, cfg.model.channels)
    for _ in range(3):
        losses = train_step(state, data, cfg.train, "cpu")
        assert all(math.isfinite(v) for v in losses.values()), losses
    weights = [*state.generator.parameters(), *state.discriminator.parameters()]
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in weights)
    fp32 = new_training_state(cfg, "cpu")
    half = copy.deepcopy(fp32)
    train_step(fp32, data, dataclasses.replace(cfg.train, precision="fp32"), "cpu")
    train_step(half, data, cfg.train, "cpu")  # the same start and draws, other arithmetic: close, not equal
    pairs = list(zip(fp32.generator.parameters(), half.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in pairs)
    assert all(torch.allclose(a, b, atol=0.05) for a, b in pairs)


def test_fp16_skips_an_update_whose_gradients_overflow_and_lowers_the_scale():
    from rpgan.io.data import load_data
    from rpgan.training.checkpoint import new_training_state
    from rpgan.training.loop import train_step
    from tests.conftest import tiny_run

    cfg = tiny_run(precision="fp16")
    state = new_training_state(cfg, "cpu")
    assert state.scaler_g.is_enabled() and state.scaler_d.is_enabled()
    state.scaler_d = torch.amp.GradScaler("cpu", init_scale=3e38)  # the scaled loss overflows in backward
    before = copy.deepcopy(state.discriminator.state_dict())
    train_step(state, load_data("digits", cfg.model.image_size, cfg.model.channels), cfg.train, "cpu")
    assert state.scaler_d.get_scale() < 3e38
    weights = [k for k in before if not k.endswith(("_u", "_v"))]  # spectral norm's power iteration runs anyway
    assert all(torch.equal(before[k], state.discriminator.state_dict()[k]) for k in weights)


@pytest.mark.slow  # torch.compile takes tens of seconds on the CPU
def test_a_compiled_run_trains_and_saves_the_eager_format(run_ahead):
    """`rpgan train --compile` of conftest's tiny RPGAN (conftest's AHEAD)."""
    from rpgan.training.checkpoint import load_training_state, new_training_state, read_config

    final = sorted((run_ahead / "checkpoints").iterdir())[-1]
    cfg = read_config(final)
    assert cfg.train.compile
    saved = torch.load(final / "discriminator.pt", weights_only=True)
    fresh = new_training_state(cfg, "cpu")
    assert saved.keys() == fresh.discriminator.state_dict().keys()  # no torch.compile wrapper names
    state = load_training_state(final, cfg, "cpu")  # eager models load it, strictly
    assert state.step == cfg.train.steps == 4
    trained = dict(state.generator.named_parameters())
    assert all(torch.isfinite(p).all() for p in trained.values())
    assert any(not torch.equal(p, trained[k]) for k, p in fresh.generator.named_parameters())
