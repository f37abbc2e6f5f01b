"""Neighbourhood structure of embeddings: k-NN label agreement and trustworthiness/continuity of a projection."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.analysis.inputs import DEFAULT_K, as_labels, as_matrix, check_metric, subsample

DEFAULT_KNN_METRIC = "cosine"
# k-NN agreement queries at most this many (deterministically chosen) points against the full
# index: an unbiased estimate at a cost linear in N instead of quadratic.
KNN_QUERY_SAMPLE = 5_000
# Trustworthiness/continuity need N x N distance and rank matrices; above this, a subsample.
PRESERVATION_SAMPLE = 5_000


@dataclass
class KnnAgreement:
    """Mean fraction of each point's k nearest neighbours that share its label."""

    agreement: float
    chance: float  # sum_c p_c^2: the agreement of labels assigned at random with these frequencies
    k: int  # neighbours actually used (clamped to N - 1)
    metric: str
    per_class: dict[str, float]  # mean agreement of the points of each class


def chance_agreement(labels: Sequence) -> float:
    """sum_c p_c^2: the probability that two random points share a label."""
    _, counts = np.unique(np.asarray([str(v) for v in labels], dtype=object), return_counts=True)
    p = counts / counts.sum()
    return float(np.sum(p * p))


def _neighbours_excluding_self(x: np.ndarray, rows: np.ndarray, k: int, metric: str) -> np.ndarray:
    """[len(rows), k] nearest-neighbour indices in x of x[rows], the query point itself excluded."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(x)
    found = index.kneighbors(x[rows], return_distance=False)
    is_self = found == rows[:, None]
    # Exact duplicates tie at distance 0 and may push the point itself out of its k+1 list;
    # then the farthest of the k+1 is dropped instead, so every row keeps exactly k.
    is_self[~is_self.any(axis=1), -1] = True
    return found[~is_self].reshape(len(rows), k)


def knn_label_agreement(x: np.ndarray, labels: Sequence, k: int = DEFAULT_K, metric: str = DEFAULT_KNN_METRIC,
                        seed: int = 0) -> KnnAgreement:
    """Mean fraction of the k nearest neighbours (full space, self excluded) sharing each point's label."""
    x = as_matrix(x, "embeddings", min_rows=2)
    y = as_labels(labels, len(x), "labels")
    metric = check_metric(metric)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    k = min(k, len(x) - 1)
    rows = subsample(len(x), KNN_QUERY_SAMPLE, seed)
    neighbours = _neighbours_excluding_self(x, rows, k, metric)
    share = (y[neighbours] == y[rows][:, None]).mean(axis=1)
    per_class = {str(c): float(share[y[rows] == c].mean()) for c in sorted(set(y[rows].tolist()))}
    return KnnAgreement(agreement=float(share.mean()), chance=chance_agreement(y), k=k, metric=metric,
                        per_class=per_class)


def _nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices (in no particular order) of each row's k nearest other rows."""
    d = dist.copy()
    np.fill_diagonal(d, np.inf)
    # Only the set matters for the penalty, so a partition (O(N) per row) replaces a full sort.
    return np.argpartition(d, k - 1, axis=1)[:, :k]


def _rank_penalty_score(rank_dist: np.ndarray, neighbour_dist: np.ndarray, k: int) -> float:
    """1 - normalised sum of (rank - k) in rank space of the k-NN in neighbour space that rank beyond k."""
    n = len(rank_dist)
    neighbours = _nearest(neighbour_dist, k)
    d = rank_dist.copy()
    np.fill_diagonal(d, np.inf)
    penalty = 0
    # rank(i, j) = 1 + #points strictly closer to i than j: only the N x k ranks that are needed,
    # instead of sorting all N x N (ties get their best rank; sklearn orders them arbitrarily).
    chunk = max(1, 2**24 // (k * n))
    for start in range(0, n, chunk):
        block = d[start:start + chunk]
        target = np.take_along_axis(block, neighbours[start:start + chunk], axis=1)  # [b, k]
        ranks = 1 + (block[:, None, :] < target[:, :, None]).sum(axis=2)
        penalty += int(np.maximum(ranks - k, 0).sum())
    return 1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))


@dataclass
class Preservation:
    """How well a low-dimensional projection preserves k-NN neighbourhoods (Venna & Kaski 2001)."""

    trustworthiness: float  # 1 = no point in a projected neighbourhood is far away in the original space
    continuity: float  # 1 = no original neighbour is torn away in the projection
    k: int  # neighbours actually used (k < N/2, on the subsample)
    metric: str  # metric of the original space; the projection is always euclidean
    n_rows: int  # rows used (PRESERVATION_SAMPLE at most)


def neighbourhood_preservation(x: np.ndarray, projection: np.ndarray, k: int = DEFAULT_K,
                               metric: str = "euclidean", seed: int = 0) -> Preservation:
    """Trustworthiness and continuity of projection [N, d] of x [N, D], on a seeded subsample for large N."""
    from sklearn.metrics import pairwise_distances

    x = as_matrix(x, "embeddings", min_rows=4)
    projection = as_matrix(projection, "projection")
    if len(projection) != len(x):
        raise ValueError(f"projection: has {len(projection)} rows but the embeddings have {len(x)}")
    metric = check_metric(metric)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    rows = subsample(len(x), PRESERVATION_SAMPLE, seed)
    n = len(rows)
    # The normalisation 2 / (n k (2n - 3k - 1)) is only valid for k < n / 2.
    k = max(1, min(k, n // 2 - 1))
    high = pairwise_distances(x[rows], metric=metric)
    low = pairwise_distances(projection[rows], metric="euclidean")
    # Trustworthiness penalises intrusions (projected neighbours ranked far in the original space);
    # continuity swaps the roles and penalises extrusions (original neighbours ranked far in 2-D).
    return Preservation(trustworthiness=_rank_penalty_score(high, low, k),
                        continuity=_rank_penalty_score(low, high, k), k=k, metric=metric, n_rows=n)


def continuity(x: np.ndarray, projection: np.ndarray, k: int = DEFAULT_K, metric: str = "euclidean",
               seed: int = 0) -> float:
    """Continuity (Venna & Kaski): for euclidean x equals sklearn trustworthiness(projection, x, k)."""
    return neighbourhood_preservation(x, projection, k, metric, seed).continuity


def trustworthiness(x: np.ndarray, projection: np.ndarray, k: int = DEFAULT_K, metric: str = "euclidean",
                    seed: int = 0) -> float:
    """Trustworthiness (Venna & Kaski): equals sklearn trustworthiness(x, projection, k, metric)."""
    return neighbourhood_preservation(x, projection, k, metric, seed).trustworthiness
