"""Wang & Isola (2020) alignment and uniformity of L2-normalised embeddings."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.analysis.inputs import as_labels, as_matrix, seeded_rng

# Alignment/uniformity use every pair up to this many pairs, a seeded uniform sample above it.
MAX_PAIRS = 200_000
# Pairs whose squared distance is computed at once (bounds memory at ~8192 x D floats).
_PAIR_CHUNK = 8_192


@dataclass
class AlignmentUniformity:
    """Wang & Isola (2020) alignment (alpha=2) and uniformity (t=2) of L2-normalised embeddings."""

    alignment: float | None  # mean squared distance of same-label pairs in [0, 4]; None: no such pair
    uniformity: float  # log mean exp(-2 ||x - y||^2) over all pairs in [-8, 0]; lower = more uniform
    alignment_pairs: int  # pairs used for alignment
    uniformity_pairs: int  # pairs used for uniformity
    exact: bool  # True when every pair was used (no sampling)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (their direction is undefined)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _pair_sq_dists(z: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """||z[i] - z[j]||^2 per pair, chunked so memory stays bounded."""
    out = np.empty(len(i))
    for start in range(0, len(i), _PAIR_CHUNK):
        diff = z[i[start:start + _PAIR_CHUNK]] - z[j[start:start + _PAIR_CHUNK]]
        out[start:start + _PAIR_CHUNK] = np.einsum("ij,ij->i", diff, diff)
    return out


def _all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair i < j of range(n)."""
    return np.triu_indices(n, k=1)


def _random_pairs(n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """m pairs i != j drawn uniformly (with replacement) from range(n)."""
    i = rng.integers(0, n, m)
    j = rng.integers(0, n - 1, m)
    return i, j + (j >= i)


def _same_label_pairs(y: np.ndarray, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Same-label pairs: all of them if at most max_pairs, else max_pairs drawn uniformly; and whether exact."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pair_counts = counts * (counts - 1) // 2
    total = int(pair_counts.sum())
    if total == 0:
        return np.empty(0, int), np.empty(0, int), True
    if total <= max_pairs:
        parts = [_all_pairs(int(c)) for c in counts]
        i = np.concatenate([order[s + a] for s, (a, _) in zip(starts, parts)])
        j = np.concatenate([order[s + b] for s, (_, b) in zip(starts, parts)])
        return i, j, True
    # A class drawn with probability proportional to its pair count, then two distinct members:
    # every same-label pair is equally likely.
    c = rng.choice(len(classes), size=max_pairs, p=pair_counts / total)
    a = rng.integers(0, counts[c])
    b = rng.integers(0, counts[c] - 1)
    b = b + (b >= a)
    return order[starts[c] + a], order[starts[c] + b], False


def _log_mean_exp(values: np.ndarray) -> float:
    """log(mean(exp(values))) without overflow."""
    from scipy.special import logsumexp

    return float(logsumexp(values) - math.log(len(values)))


def alignment_uniformity(x: np.ndarray, labels: Sequence, seed: int = 0,
                         max_pairs: int = MAX_PAIRS) -> AlignmentUniformity:
    """Alignment (same-label pairs as positives) and uniformity of the L2-normalised rows of x."""
    x = as_matrix(x, "embeddings", min_rows=2)
    y = as_labels(labels, len(x), "labels")
    if max_pairs < 1:
        raise ValueError(f"max_pairs: must be >= 1, got {max_pairs}")
    z = _normalise_rows(x)
    rng = seeded_rng(seed)
    n = len(z)
    exact_all = n * (n - 1) // 2 <= max_pairs
    ui, uj = _all_pairs(n) if exact_all else _random_pairs(n, max_pairs, rng)
    uniformity = _log_mean_exp(-2.0 * _pair_sq_dists(z, ui, uj))
    ai, aj, exact_same = _same_label_pairs(y, max_pairs, rng)
    alignment = float(_pair_sq_dists(z, ai, aj).mean()) if len(ai) else None
    return AlignmentUniformity(alignment=alignment, uniformity=uniformity, alignment_pairs=len(ai),
                               uniformity_pairs=len(ui), exact=exact_all and exact_same)
