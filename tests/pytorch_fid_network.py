"""pytorch-fid's FID Inception as pytorch-fid builds it (its blocks on torchvision's Inception3),
with random weights and nothing downloaded: the reference rpgan.metrics.fid_inception is checked
against (tests/test_inception.py) and timed against (bench/process_start.py)."""

from __future__ import annotations

import torch


def pytorch_fid_network() -> torch.nn.Module:
    """pytorch_fid.inception.fid_inception_v3's network, in eval mode, random weights."""
    import torchvision
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2

    net = torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    for name, block in [("Mixed_5b", FIDInceptionA(192, pool_features=32)),
                        ("Mixed_5c", FIDInceptionA(256, pool_features=64)),
                        ("Mixed_5d", FIDInceptionA(288, pool_features=64)),
                        ("Mixed_6b", FIDInceptionC(768, channels_7x7=128)),
                        ("Mixed_6c", FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6d", FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6e", FIDInceptionC(768, channels_7x7=192)),
                        ("Mixed_7b", FIDInceptionE_1(1280)), ("Mixed_7c", FIDInceptionE_2(2048))]:
        setattr(net, name, block)
    return net.eval()


def pool3(net: torch.nn.Module) -> torch.nn.Sequential:
    """Its layers up to Mixed_7c, then the average pool: images [N, 3, 299, 299] -> [N, 2048, 1, 1]."""
    return torch.nn.Sequential(*list(net.children())[:-3], net.avgpool)
