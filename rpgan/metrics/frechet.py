"""The Fréchet distance between two Gaussians, without scipy's sqrtm (docs/analysis.md).

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2). The last trace equals the sum of
square roots of the eigenvalues of S1^1/2 S2 S1^1/2, a symmetric PSD matrix: two `eigh` calls
instead of an iterative matrix square root.

From the features themselves, S1 = A^T A / (N - 1) and S2 = B^T B / (M - 1), A and B the
centred points [N, D] and [M, D]. S1 S2 has the nonzero eigenvalues of the N x N matrix
(B A^T)^T (B A^T) / ((N - 1)(M - 1)), so the trace is the sum of singular values of B A^T /
sqrt((N - 1)(M - 1)), an M x N matrix: when either set has fewer points than dimensions
(2048-d Inception features of a few hundred images), the same value without a D x D
eigendecomposition.
"""

from __future__ import annotations

import numpy as np


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, D] -> (mean [D], covariance [D, D]) in float64, as pytorch-fid computes them."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); vectors [D], matrices [D, D]."""
    root = _sqrt_psd(sigma1)
    inner = np.linalg.eigvalsh(root @ sigma2 @ root)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def frechet_distance_of(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between the Gaussians of features x [N, D] and y [M, D]: the value of
    frechet_distance(*statistics(x), *statistics(y)) to float rounding, from the singular values
    of an M x N matrix when either set has fewer points than dimensions (module docstring)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if min(len(x), len(y)) >= x.shape[1]:  # full-rank covariances: nothing smaller to decompose
        return frechet_distance(*statistics(x), *statistics(y))
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    a, b = x - mu_x, y - mu_y
    na, nb = len(x) - 1, len(y) - 1
    trace_sqrt = np.linalg.svd(b @ a.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = mu_x - mu_y
    return float(diff @ diff + (a * a).sum() / na + (b * b).sum() / nb - 2 * trace_sqrt)
