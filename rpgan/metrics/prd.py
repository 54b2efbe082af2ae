"""Precision and recall for distributions (Sajjadi et al., NeurIPS 2018), as their reference code.

Both embeddings are clustered together (k-means, 20 clusters); the cluster histograms of the
two sets give the PRD curve over 1001 slopes; this is averaged over 10 clusterings. F_8 summarises
recall and F_1/8 precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import MiniBatchKMeans


@dataclass(frozen=True)
class PRD:
    precision: np.ndarray  # [num_angles]
    recall: np.ndarray  # [num_angles]
    f_8: float  # max F_beta with beta = 8: recall
    f_1_8: float  # max F_beta with beta = 1/8: precision


def prd_curve(eval_dist: np.ndarray, ref_dist: np.ndarray, num_angles: int = 1001,
              epsilon: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """PRD curve of two histograms [K] over slopes tan(angle), angle in (0, pi/2)."""
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num_angles))[:, None]
    precision = np.minimum(ref_dist[None, :] * slopes, eval_dist[None, :]).sum(axis=1)
    recall = precision / slopes[:, 0]
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def _cluster_histograms(eval_emb: np.ndarray, ref_emb: np.ndarray, num_clusters: int,
                        seed: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([eval_emb, ref_emb])
    kmeans = MiniBatchKMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    labels = kmeans.fit(data).labels_
    e = np.bincount(labels[: len(eval_emb)], minlength=num_clusters) / len(eval_emb)
    r = np.bincount(labels[len(eval_emb):], minlength=num_clusters) / len(ref_emb)
    return e, r


def max_f_beta(precision: np.ndarray, recall: np.ndarray, beta: float) -> float:
    """max over the curve of F_beta = (1 + b^2) p r / (b^2 p + r)."""
    denom = beta**2 * precision + recall
    f = np.where(denom > 0, (1 + beta**2) * precision * recall / np.maximum(denom, 1e-300), 0.0)
    return float(f.max())


def compute_prd(eval_emb: np.ndarray, ref_emb: np.ndarray, num_clusters: int = 20, num_angles: int = 1001,
                num_runs: int = 10, seed: int = 0) -> PRD:
    """PRD of generated embeddings [N, D] against reference embeddings [M, D]."""
    curves = [prd_curve(*_cluster_histograms(eval_emb, ref_emb, num_clusters, seed + run), num_angles)
              for run in range(num_runs)]
    precision = np.mean([c[0] for c in curves], axis=0)
    recall = np.mean([c[1] for c in curves], axis=0)
    return PRD(precision, recall, max_f_beta(precision, recall, 8), max_f_beta(precision, recall, 1 / 8))
