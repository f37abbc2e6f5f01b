"""Cosine k-nearest-neighbour probes on standardised embeddings (classification and regression).

Protocol: embeddings are standardised with the training split's mean and scale (or given ones), then
L2-normalised, so the dot product is the cosine similarity. A test record's score for a class is the
(optionally similarity-weighted) fraction of its k nearest training records carrying that class; for
multi-class targets the fractions sum to 1, for multi-label targets each label is voted separately,
and for regression the score is the neighbours' (weighted) mean target. Distance weighting uses
w = 1 / (1 - cos + 1e-6), i.e. inverse cosine distance.

k: a single given value is used as is; otherwise it is chosen from the grid by leave-one-out on the
training split (each training record scored by its k nearest *other* training records), maximising
macro AUROC (ties: lower log-loss, then the larger k) or, for regression, minimising the mean squared
error of standardised targets (ties: the larger k). LOO needs one neighbour search for the whole
grid, no folds and no seed, so a kNN probe depends on the seed only through its training subset.
Grid values above n_train - 1, and (classification) above the smallest class's training count, are
dropped (k = 1 always stays): a vote over more neighbours than a class has members cannot elect it.
Neighbours are ordered by similarity, then by training index; which of several records tied exactly
at the k-th similarity is kept is arbitrary but deterministic (numpy's argpartition).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.preprocessing import StandardScaler

from services.probing.metrics import auroc_weighted, evaluable_columns, log_loss

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
CHUNK = 1024  # query rows per similarity block: bounds memory to CHUNK * n_train floats


@dataclass
class KnnFit:
    """Chosen k, the standardisation used, and the test-split scores."""

    k: int
    mean: np.ndarray
    scale: np.ndarray
    test_scores: np.ndarray  # [n_test, C]: vote fractions (classification) or predictions (regression)
    notes: list[str]


def unit_rows(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised, L2-normalised rows as float32 (all-zero rows stay zero)."""
    z = ((np.asarray(x, dtype=np.float64) - mean) / scale).astype(np.float32)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)


def _top_k(sim: np.ndarray, kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of each row's kmax largest entries, best first (ties: lower index)."""
    if kmax < sim.shape[1]:
        part = np.argpartition(-sim, kmax - 1, axis=1)[:, :kmax]
    else:
        part = np.broadcast_to(np.arange(sim.shape[1]), sim.shape).copy()
    vals = np.take_along_axis(sim, part, axis=1)
    # Sort by similarity descending, then by index ascending, within the kept candidates.
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def neighbours(query: np.ndarray, base: np.ndarray, kmax: int,
               exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, kmax], cosine similarities [q, kmax]) of each query row's nearest base rows."""
    out_idx = np.empty((query.shape[0], kmax), dtype=np.int64)
    out_sim = np.empty((query.shape[0], kmax), dtype=np.float32)
    for start in range(0, query.shape[0], CHUNK):
        stop = min(start + CHUNK, query.shape[0])
        sim = query[start:stop] @ base.T
        if exclude_self:
            # Leave-one-out: a record is never its own neighbour (by index, so duplicates still count).
            sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        out_idx[start:stop], out_sim[start:stop] = _top_k(sim, kmax)
    return out_idx, out_sim


def vote(nbr_idx: np.ndarray, nbr_sim: np.ndarray, train_y: np.ndarray, k: int,
         distance_weighted: bool) -> np.ndarray:
    """(Weighted) mean of the k nearest neighbours' targets [q, C]."""
    idx, sim = nbr_idx[:, :k], nbr_sim[:, :k].astype(np.float64)
    weights = 1.0 / (1.0 - sim + 1e-6) if distance_weighted else np.ones_like(sim)
    # Sum first, divide once: equal weights then give exact count / k, never 1 + 1 ulp.
    return np.einsum("qk,qkc->qc", weights, np.asarray(train_y, dtype=np.float64)[idx]) / weights.sum(axis=1)[:, None]


def k_grid(ks: Sequence[int] | None, train_y: np.ndarray, regression: bool, notes: list[str]) -> list[int]:
    """Candidate ks: the given grid (default DEFAULT_KS) capped by n_train - 1 and the smallest class."""
    grid = sorted(set(int(k) for k in (ks or DEFAULT_KS)))
    if any(k < 1 for k in grid):
        raise ValueError(f"every k must be at least 1, got {grid}")
    if len(grid) == 1:
        return _cap_fixed(grid[0], train_y.shape[0], notes)
    cap = train_y.shape[0] - 1
    if not regression:
        cap = min(cap, int(train_y.sum(axis=0).min()))
    kept = [k for k in grid if k <= cap] or [1]
    if kept != grid:
        notes.append(f"k grid {grid} reduced to {kept} (n_train={train_y.shape[0]}, smallest class "
                     f"{int(train_y.sum(axis=0).min()) if not regression else 'n/a'})")
    return kept


def _cap_fixed(k: int, n_train: int, notes: list[str]) -> list[int]:
    """A fixed k, capped at the training size."""
    if k > n_train:
        notes.append(f"k={k} exceeds the {n_train} training records: k={n_train} used")
        return [n_train]
    return [k]


def _loo_key(y: np.ndarray, scores: np.ndarray, multi_label: bool, regression: bool,
             y_scale: np.ndarray) -> tuple[float, ...]:
    """Selection key of one k from its LOO scores (higher is better)."""
    if regression:
        return (-float(np.mean(((scores - y) / y_scale) ** 2)),)
    mask = evaluable_columns(y)
    ones = np.ones((1, y.shape[0]))
    aurocs = [auroc_weighted(y[:, k], scores[:, k], ones)[0] for k in np.flatnonzero(mask)]
    auroc = float(np.mean(aurocs)) if aurocs else -np.inf
    return auroc, -log_loss(y, scores, multi_label)


def select_k(z_train: np.ndarray, train_y: np.ndarray, grid: list[int], multi_label: bool, regression: bool,
             distance_weighted: bool) -> int:
    """The grid's best k by leave-one-out on the training split (ties: the larger k)."""
    if len(grid) == 1:
        return grid[0]
    idx, sim = neighbours(z_train, z_train, max(grid), exclude_self=True)
    y_scale = np.where(train_y.std(axis=0) > 0, train_y.std(axis=0), 1.0) if regression else None
    best_k, best_key = grid[0], None
    for k in grid:
        key = _loo_key(train_y, vote(idx, sim, train_y, k, distance_weighted), multi_label, regression, y_scale)
        if best_key is None or key >= best_key:
            best_k, best_key = k, key
    return best_k


def fit_knn(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, multi_label: bool, regression: bool,
            ks: Sequence[int] | None = None, distance_weighted: bool = False,
            standardiser: tuple[np.ndarray, np.ndarray] | None = None) -> KnnFit:
    """Choose k (LOO) and score the test split by cosine kNN votes on standardised embeddings."""
    notes: list[str] = []
    if standardiser is None:
        scaler = StandardScaler().fit(train_x)
        mean, scale = scaler.mean_.copy(), scaler.scale_.copy()
    else:
        mean, scale = standardiser
    z_train, z_test = unit_rows(train_x, mean, scale), unit_rows(test_x, mean, scale)
    grid = k_grid(ks, train_y, regression, notes)
    k = select_k(z_train, train_y, grid, multi_label, regression, distance_weighted)
    idx, sim = neighbours(z_test, z_train, k)
    scores = vote(idx, sim, train_y, k, distance_weighted)
    # Weighted votes can round a hair outside [0, 1]; probabilities must not.
    return KnnFit(k, mean, scale, scores if regression else np.clip(scores, 0.0, 1.0), notes)
