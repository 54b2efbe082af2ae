"""Responsibility distances, the Fréchet distance, PRD and the offline Inception weights."""

from __future__ import annotations

import math

from analysis.distances import color_histograms, color_spread, hellinger, mean_pairwise, ratio_to_first, semantic_spread
from rpgan.metrics.frechet import frechet_distance, frechet_distance_of, statistics
from rpgan.metrics.prd import compute_prd

import numpy as np
import pytest
import torch


def test_color_histograms_use_25_equal_segments_per_channel():
    img = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    img[0, 0] = torch.tensor([[0, 10], [11, 255]])  # 0..10 -> bin 0 (256/25 = 10.24 wide), 11 -> bin 1
    h = color_histograms(img)
    assert h.shape == (1, 3, 25)
    assert h[0, 0, 0] == 0.5 and h[0, 0, 1] == 0.25 and h[0, 0, 24] == 0.25
    assert torch.allclose(h.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    gray = color_histograms(img[:, :1])
    assert torch.equal(gray[0, 1], h[0, 0])  # gray counts as R = G = B


def test_hellinger_matches_direct_formula():
    rng = np.random.default_rng(0)
    p, q = rng.random(25), rng.random(25)
    p, q = p / p.sum(), q / q.sum()
    direct = math.sqrt(sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(p, q))) / math.sqrt(2)
    assert hellinger(torch.tensor(p), torch.tensor(q)).item() == pytest.approx(direct, rel=1e-12)
    assert hellinger(torch.tensor(p), torch.tensor(p)).item() == 0
    disjoint = torch.zeros(2, 25, dtype=torch.float64)
    disjoint[0, 0] = disjoint[1, 1] = 1
    assert hellinger(disjoint[0], disjoint[1]).item() == pytest.approx(1.0)


def test_spreads_are_mean_pairwise_distances_and_zero_for_identical_images():
    feats = torch.randn(4, 2048, dtype=torch.float64)
    direct = sum((feats[i] - feats[j]).norm() for i in range(4) for j in range(4) if i != j) / 12
    assert semantic_spread(feats).item() == pytest.approx(direct.item(), rel=1e-9)
    same = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8).expand(4, -1, -1, -1)
    assert torch.all(color_spread(color_histograms(same)) == 0)
    assert semantic_spread(feats[:1].expand(4, -1)).item() == pytest.approx(0, abs=1e-6)
    assert mean_pairwise(torch.ones(1, 1)).item() == 0  # one image: no pairs, no spread


def test_ratio_to_first_is_one_for_bucket_one_and_nan_when_undefined():
    spread = torch.tensor([[2.0, 4.0, 1.0], [0.0, 3.0, 1.0]], dtype=torch.float64)
    ratio = ratio_to_first(spread)
    assert ratio[0].tolist() == [1.0, 2.0, 0.5]
    assert torch.isnan(ratio[1]).all()


def test_frechet_distance_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 64))
    b = rng.normal(loc=0.3, size=(300, 64)) @ rng.normal(size=(64, 64)) * 0.5
    mine = frechet_distance(*statistics(a), *statistics(b))
    theirs = calculate_frechet_distance(*statistics(a), *statistics(b))
    assert mine == pytest.approx(theirs, rel=1e-6)
    assert frechet_distance(*statistics(a), *statistics(a)) == pytest.approx(0, abs=1e-8)


@pytest.mark.parametrize("n, m", [(20, 30), (20, 300), (300, 20), (300, 300)])
def test_frechet_distance_of_features_equals_that_of_their_statistics(n, m):
    """Fewer points than dimensions (64) in one set or both: the small problem gives the same
    distance, to the D x D route's rounding (it adds square roots of rounding-sized eigenvalues
    beyond the covariance's rank: about 1e-8 relative)."""
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64)) * 0.3
    b = np.abs(rng.normal(loc=0.2, size=(m, 64)))
    assert frechet_distance_of(a, b) == pytest.approx(frechet_distance(*statistics(a), *statistics(b)), rel=1e-7)
    assert frechet_distance_of(a, a) == pytest.approx(0, abs=1e-8)


def test_prd_identical_and_disjoint_distributions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 8))
    same = compute_prd(x, x, num_runs=2)
    assert same.f_8 == pytest.approx(1, abs=1e-6) and same.f_1_8 == pytest.approx(1, abs=1e-6)
    far = compute_prd(x, x + 100, num_runs=2)
    assert far.f_8 < 0.05 and far.f_1_8 < 0.05
    assert same.precision.shape == same.recall.shape == (1001,)
