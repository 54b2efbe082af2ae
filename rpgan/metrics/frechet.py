"""The Fréchet distance between two Gaussians, without scipy's sqrtm (docs/analysis.md).

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2). The last trace equals the sum of
square roots of the eigenvalues of S1^1/2 S2 S1^1/2, a symmetric PSD matrix: two `eigh` calls
instead of an iterative matrix square root.
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
