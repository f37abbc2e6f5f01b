"""Input checks and seeded sampling shared by the representation metrics.

Every check raises ValueError naming the offending argument, so callers (and the analysis server)
can pass the message on unchanged.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Metrics that umap-learn, sklearn.manifold.trustworthiness, NearestNeighbors and pairwise_distances
# all understand by name.
SUPPORTED_METRICS = ("euclidean", "cosine", "correlation", "manhattan", "chebyshev")
# Neighbours for k-NN agreement and trustworthiness/continuity, and dims per top-k SHAP set.
DEFAULT_K = 10


def as_matrix(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    """A finite 2-D float64 array with at least min_rows rows (x itself if float64: do not write), or ValueError."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [N, D] array, got shape {list(arr.shape)}")
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ValueError(f"{name}: needs at least {min_rows} rows and 1 column, got shape {list(arr.shape)}")
    # No copy when x is already float64: every metric calls this on the same matrix and none writes into it,
    # so at 100k x 768 each call would otherwise hold another 600 MB.
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains {int(np.count_nonzero(~np.isfinite(arr)))} non-finite value(s) "
                         "(NaN or Inf)")
    return arr


def as_labels(labels: Sequence, n: int, name: str) -> np.ndarray:
    """labels as a string array of length n, or ValueError."""
    if len(labels) != n:
        raise ValueError(f"{name}: has {len(labels)} entries but the embeddings have {n} rows")
    return np.asarray([str(v) for v in labels], dtype=object)


def check_metric(metric: str) -> str:
    """A metric both NearestNeighbors and pairwise_distances accept by name, or ValueError."""
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"metric: {metric!r} is not supported; use one of {', '.join(SUPPORTED_METRICS)}")
    return metric


def seeded_rng(seed: int) -> np.random.Generator:
    """A numpy generator; any Python int is a valid seed."""
    return np.random.default_rng(int(seed) % 2**63)


def subsample(n: int, size: int, seed: int) -> np.ndarray:
    """All row indices if n <= size, else `size` sorted indices drawn without replacement."""
    if n <= size:
        return np.arange(n)
    return np.sort(seeded_rng(seed).choice(n, size, replace=False))
