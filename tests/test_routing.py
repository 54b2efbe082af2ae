"""Random routing is exact: every sample goes through exactly its own blocks."""

from __future__ import annotations

import dataclasses

from rpgan.model.networks import Generator
from rpgan.model.paths import frozen_path_variations, sample_paths
from tests.conftest import TINY_MODELS

import pytest
import torch
import torch.nn.functional as F


def plain_resnet_forward(G: Generator, path: list[int]) -> torch.Tensor:
    """One sample through an SN-ResNet generator written with plain functional ops and the
    weight slices of its own blocks (eval mode: BatchNorm uses running statistics)."""
    def bn(norm, b, x):
        x = F.batch_norm(x, norm.running_mean, norm.running_var, None, None, False, 0.0, norm.eps)
        return x * norm.weight[b].view(1, -1, 1, 1) + norm.bias[b].view(1, -1, 1, 1)

    def conv(layer, b, x, pad):
        return F.conv2d(x, layer.weight[b], layer.bias[b], padding=pad)

    cfg = G.cfg
    first, *middle, last = G.buckets
    x = F.linear(G.z[None], first.fc.weight[path[0]], first.fc.bias[path[0]]).view(1, cfg.width, 4, 4)
    for bucket, b in zip(middle, path[1:-1]):
        up = (lambda t: F.interpolate(t, scale_factor=2.0)) if bucket.upsample else (lambda t: t)
        h = conv(bucket.conv1, b, up(F.relu(bn(bucket.bn1, b, x))), 1)
        h = conv(bucket.conv2, b, F.relu(bn(bucket.bn2, b, h)), 1)
        x = h + (conv(bucket.skip, b, up(x), 0) if bucket.skip is not None else up(x))
    x = G.pre_output(x)
    return torch.tanh(conv(last.conv, path[-1], x, 1))


def _trained_stats(G: Generator) -> Generator:
    """Give BatchNorm non-trivial running statistics, as after training."""
    G.train()
    with torch.no_grad():
        for _ in range(3):
            G(*G.sample_latent(16, torch.Generator().manual_seed(1)))
    return G.eval()


@pytest.mark.parametrize("routing", ["group", "gather", "loop"])
def test_each_sample_runs_through_its_own_blocks(routing):
    cfg = dataclasses.replace(TINY_MODELS["resnet"], blocks=(3, 5, 4, 2), routing=routing)
    G = _trained_stats(Generator(cfg))
    paths = sample_paths(cfg.blocks, 12, torch.Generator().manual_seed(0))
    with torch.no_grad():
        batch = G(paths)
        for k, path in enumerate(paths.tolist()):
            torch.testing.assert_close(batch[k : k + 1], plain_resnet_forward(G, path), rtol=1e-4, atol=1e-5)


def test_one_block_per_bucket_is_the_plain_generator_in_training_mode():
    """With one block per bucket the routed layers are ordinary layers: batch statistics too."""
    cfg = dataclasses.replace(TINY_MODELS["resnet"], blocks=(1, 1, 1))
    G = Generator(cfg).train()
    paths = torch.zeros(6, 3, dtype=torch.long)
    # The same network from torch.nn layers, with block 0's weights.
    first, mid, last = G.buckets
    lin = torch.nn.Linear(cfg.z_dim, 16 * cfg.width)
    bn1, bn2 = torch.nn.BatchNorm2d(cfg.width), torch.nn.BatchNorm2d(cfg.width)
    c1, c2 = torch.nn.Conv2d(cfg.width, cfg.width, 3, 1, 1), torch.nn.Conv2d(cfg.width, cfg.width, 3, 1, 1)
    sk, out = torch.nn.Conv2d(cfg.width, cfg.width, 1), torch.nn.Conv2d(cfg.width, 3, 3, 1, 1)
    with torch.no_grad():
        for plain, routed in [(lin, first.fc), (bn1, mid.bn1), (bn2, mid.bn2), (c1, mid.conv1), (c2, mid.conv2),
                              (sk, mid.skip), (out, last.conv)]:
            plain.weight.copy_(routed.weight[0])
            plain.bias.copy_(routed.bias[0])
    up = torch.nn.Upsample(scale_factor=2)
    x = lin(G.z.expand(6, -1)).view(6, cfg.width, 4, 4)
    h = c2(torch.relu(bn2(c1(up(torch.relu(bn1(x)))))))
    expected = torch.tanh(out(G.pre_output(h + sk(up(x)))))
    torch.testing.assert_close(G(paths), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet", "dcgan", "fc"])
def test_routings_agree_in_training_and_eval(arch):
    base = Generator(TINY_MODELS[arch])
    paths = sample_paths(base.blocks, 10, torch.Generator().manual_seed(3))
    outs = {}
    for routing in ("group", "gather", "loop"):
        G = Generator(dataclasses.replace(TINY_MODELS[arch], routing=routing))
        G.load_state_dict(base.state_dict())
        outs[routing] = (G.train()(paths), G.eval()(paths))
    for routing in ("gather", "loop"):
        for got, want in zip(outs[routing], outs["group"]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("routing", ["group", "gather", "loop"])
def test_gradients_reach_only_the_blocks_on_the_path(routing):
    G = Generator(dataclasses.replace(TINY_MODELS["resnet"], routing=routing)).train()
    paths = torch.tensor([[0, 1, 1], [2, 1, 0]])
    G(paths).sum().backward()
    used = {0: {0, 2}, 1: {1}, 2: {0, 1}}
    for i, bucket in enumerate(G.buckets):
        for name, p in bucket.named_parameters():
            touched = {b for b in range(len(p)) if p.grad is not None and p.grad[b].abs().sum() > 0}
            assert touched <= used[i], f"bucket {i} {name}: gradient in unused blocks {touched - used[i]}"
            assert touched, f"bucket {i} {name}: no gradient"


def test_same_seed_same_paths_same_images():
    G = _trained_stats(Generator(TINY_MODELS["resnet"]))
    a = G.sample_latent(16, torch.Generator().manual_seed(7))[0]
    b = G.sample_latent(16, torch.Generator().manual_seed(7))[0]
    c = G.sample_latent(16, torch.Generator().manual_seed(8))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (16, 3) and (a >= 0).all() and (a < torch.tensor(G.blocks)).all()
    with torch.no_grad():
        assert torch.equal(G(a), G(b))


@pytest.mark.parametrize("routing", ["group", "gather", "loop"])
def test_frozen_path_renders_the_same_in_any_batch(routing):
    G = _trained_stats(Generator(dataclasses.replace(TINY_MODELS["resnet"], routing=routing)))
    frozen = torch.tensor([2, 3, 1])
    with torch.no_grad():
        alone = G(frozen[None])
        for seed in range(3):
            mates = sample_paths(G.blocks, 9, torch.Generator().manual_seed(seed))
            batch = torch.cat([mates[:seed], frozen[None], mates[seed:]])
            torch.testing.assert_close(G(batch)[seed : seed + 1], alone, rtol=1e-5, atol=1e-6)


def test_frozen_path_variations_change_only_one_bucket():
    path = torch.tensor([4, 1, 7, 0])
    varied = frozen_path_variations(path, 2, torch.tensor([0, 3, 9]))
    assert varied.tolist() == [[4, 1, 0, 0], [4, 1, 3, 0], [4, 1, 9, 0]]


def test_gaussian_input_is_the_standard_gan():
    cfg = dataclasses.replace(TINY_MODELS["resnet"], blocks=(1, 1, 1), input="gaussian")
    G = _trained_stats(Generator(cfg))
    paths, z = G.sample_latent(5, torch.Generator().manual_seed(0))
    assert z.shape == (5, cfg.z_dim) and not hasattr(G, "z")
    with torch.no_grad():
        images = G(paths, z)
    assert images.shape == (5, 3, 8, 8)
    assert (images[0] - images[1]).abs().max() > 1e-3  # the noise, not the path, varies images
    with pytest.raises(ValueError, match="Gaussian"):
        G(paths)


def test_fixed_input_is_not_trained():
    G = Generator(dataclasses.replace(TINY_MODELS["resnet"], input="fixed"))
    assert "z" in dict(G.named_buffers()) and "z" not in dict(G.named_parameters())
    assert "z" in dict(Generator(TINY_MODELS["resnet"]).named_parameters())


def test_linear_generator_has_no_relu():
    G = Generator(dataclasses.replace(TINY_MODELS["fc"], linear=True)).eval()
    assert not any(isinstance(m, torch.nn.ReLU) for m in G.modules())
    # Without nonlinearities, the eval-mode output before tanh is affine in Z.
    paths = torch.tensor([[0, 1, 2]])

    def pre_tanh(z: torch.Tensor) -> torch.Tensor:
        G.z.data = z
        return torch.atanh(G(paths).clamp(-0.999999, 0.999999))

    z1, z2 = torch.randn(8), torch.randn(8)
    with torch.no_grad():
        torch.testing.assert_close(pre_tanh((z1 + z2) / 2), (pre_tanh(z1) + pre_tanh(z2)) / 2, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet", "dcgan", "fc"])
def test_the_group_router_never_reads_the_device_back(arch):
    """A meta-device generator holds no data: any device-to-host read (block counts read back
    per bucket) fails. The paths, sampled on the host, give every bucket's counts up front."""
    with torch.device("meta"):
        generator = Generator(TINY_MODELS[arch])
    paths, z = generator.sample_latent(6, torch.Generator().manual_seed(0))
    assert generator(paths, z).shape == (6, generator.cfg.channels, *(2 * [generator.cfg.image_size]))
    with pytest.raises(NotImplementedError):  # without the host's counts, the bucket reads them back
        generator.buckets[1](torch.empty(6, 8, device="meta"), paths[:, 1].to("meta"))
