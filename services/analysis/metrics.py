"""Representation analysis beyond UMAP/SHAP: structure, model similarity and SHAP stability.

Pure numpy/scipy/scikit-learn functions, importable without gRPC (issue #6, §2 and §3):

- structure of one embedding matrix: k-NN label agreement, trustworthiness/continuity of a
  projection, site separability, effective rank, participation ratio, alignment/uniformity;
- similarity between models: linear CKA;
- SHAP quantities: concentration (dims for 50/90% of the mass, Gini), top-k Jaccard stability
  across runs, agreement of the top dimensions across source datasets.

Every function validates its input and raises ValueError naming the offending argument.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from services.analysis.core import SUPPORTED_METRICS, dims_for_mass

DEFAULT_K = 10
DEFAULT_KNN_METRIC = "cosine"
DEFAULT_CV_FOLDS = 5
# k-NN agreement queries at most this many (deterministically chosen) points against the full
# index: an unbiased estimate at a cost linear in N instead of quadratic.
KNN_QUERY_SAMPLE = 5_000
# Trustworthiness/continuity need N x N distance and rank matrices; above this, a subsample.
PRESERVATION_SAMPLE = 5_000
# Alignment/uniformity use every pair up to this many pairs, a seeded uniform sample above it.
MAX_PAIRS = 200_000
# Pairs whose squared distance is computed at once (bounds memory at ~8192 x D floats).
_PAIR_CHUNK = 8_192


# --------------------------------------------------------------------------- validation


def _matrix(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    """A finite 2-D float64 array with at least min_rows rows and one column, or ValueError."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [N, D] array, got shape {list(arr.shape)}")
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ValueError(f"{name}: needs at least {min_rows} rows and 1 column, got shape {list(arr.shape)}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains {int(np.count_nonzero(~np.isfinite(arr)))} non-finite value(s) "
                         "(NaN or Inf)")
    return arr


def _labels(labels: Sequence, n: int, name: str) -> np.ndarray:
    """labels as a string array of length n, or ValueError."""
    if len(labels) != n:
        raise ValueError(f"{name}: has {len(labels)} entries but the embeddings have {n} rows")
    return np.asarray([str(v) for v in labels], dtype=object)


def _metric(metric: str) -> str:
    """A metric both NearestNeighbors and pairwise_distances accept by name, or ValueError."""
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"metric: {metric!r} is not supported; use one of {', '.join(SUPPORTED_METRICS)}")
    return metric


def _rng(seed: int) -> np.random.Generator:
    """A numpy generator; any Python int is a valid seed."""
    return np.random.default_rng(int(seed) % 2**63)


def _subsample(n: int, size: int, seed: int) -> np.ndarray:
    """All row indices if n <= size, else `size` sorted indices drawn without replacement."""
    if n <= size:
        return np.arange(n)
    return np.sort(_rng(seed).choice(n, size, replace=False))


# --------------------------------------------------------------------------- k-NN label agreement


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
    x = _matrix(x, "embeddings", min_rows=2)
    y = _labels(labels, len(x), "labels")
    metric = _metric(metric)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    k = min(k, len(x) - 1)
    rows = _subsample(len(x), KNN_QUERY_SAMPLE, seed)
    neighbours = _neighbours_excluding_self(x, rows, k, metric)
    share = (y[neighbours] == y[rows][:, None]).mean(axis=1)
    per_class = {str(c): float(share[y[rows] == c].mean()) for c in sorted(set(y[rows].tolist()))}
    return KnnAgreement(agreement=float(share.mean()), chance=chance_agreement(y), k=k, metric=metric,
                        per_class=per_class)


# --------------------------------------------------------------------------- trustworthiness / continuity


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

    x = _matrix(x, "embeddings", min_rows=4)
    projection = _matrix(projection, "projection")
    if len(projection) != len(x):
        raise ValueError(f"projection: has {len(projection)} rows but the embeddings have {len(x)}")
    metric = _metric(metric)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    rows = _subsample(len(x), PRESERVATION_SAMPLE, seed)
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


# --------------------------------------------------------------------------- site separability


@dataclass
class SiteSeparability:
    """Cross-validated macro one-vs-rest AUROC of a probe predicting the source dataset."""

    auroc: float  # 0.5 = sites indistinguishable, 1 = fully separable (a generalisation risk)
    per_source: dict[str, float]  # one-vs-rest AUROC of each source
    n_folds: int  # folds actually used (at most the number of patients)


def _site_probe(seed: int):
    """Standardised multinomial logistic regression, as in the probing service."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=int(seed) % 2**32))


def _out_of_fold_proba(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """[N, S] out-of-fold source probabilities; a source absent from a training fold gets 0 there."""
    from sklearn.model_selection import StratifiedGroupKFold

    sources = np.unique(y)
    proba = np.zeros((len(y), len(sources)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=int(seed) % 2**32)
    for train, test in splitter.split(x, y, groups):
        seen = np.unique(y[train])
        if len(seen) == 1:  # few patients: a training fold may hold one source, which is all it can predict
            proba[test, np.searchsorted(sources, seen[0])] = 1.0
            continue
        model = _site_probe(seed).fit(x[train], y[train])
        columns = np.searchsorted(sources, model.classes_)
        proba[np.ix_(test, columns)] = model.predict_proba(x[test])
    return proba


def site_separability(x: np.ndarray, sources: Sequence, groups: Sequence | None = None, seed: int = 0,
                      cv: int = DEFAULT_CV_FOLDS) -> SiteSeparability:
    """How well a standardised logistic probe tells the source dataset from the embedding (patient-grouped CV)."""
    from sklearn.metrics import roc_auc_score

    x = _matrix(x, "embeddings", min_rows=2)
    y = _labels(sources, len(x), "sources").astype(str)
    g = np.arange(len(x)).astype(str) if groups is None or len(groups) == 0 else _labels(groups, len(x), "groups")
    names = np.unique(y)
    if len(names) < 2:
        raise ValueError(f"sources: site separability needs at least 2 sources, got {len(names)}")
    if cv < 2:
        raise ValueError(f"cv: must be >= 2, got {cv}")
    folds = min(cv, len(set(g.tolist())))
    if folds < 2:
        raise ValueError("groups: all rows belong to one patient; cross-validation needs at least 2")
    with warnings.catch_warnings():
        # Tiny sources trigger "least populated class" and convergence warnings; the AUROC is still
        # computed on out-of-fold predictions only.
        warnings.simplefilter("ignore")
        proba = _out_of_fold_proba(x, y, g.astype(str), folds, seed)
    # One pooled out-of-fold score per row: defined even when a fold lacks a source.
    per_source = {str(s): float(roc_auc_score(y == s, proba[:, i])) for i, s in enumerate(names)}
    return SiteSeparability(auroc=float(np.mean(list(per_source.values()))), per_source=per_source, n_folds=folds)


# --------------------------------------------------------------------------- spectrum


def _singular_values(x: np.ndarray) -> np.ndarray:
    """Singular values of the column-centred x (float64)."""
    x = _matrix(x, "embeddings", min_rows=2)
    return np.linalg.svd(x - x.mean(axis=0), compute_uv=False)


def _effective_rank(s: np.ndarray) -> float:
    """exp(entropy) of singular values normalised to sum 1; 0 for an all-zero spectrum."""
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _participation_ratio(s: np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2 with covariance eigenvalues lambda ~ s^2; 0 for an all-zero spectrum."""
    lam = s * s
    denom = np.sum(lam * lam)
    return 0.0 if denom <= 0 else float(lam.sum() ** 2 / denom)


def effective_rank(x: np.ndarray) -> float:
    """Effective rank (Roy & Vetterli 2007) of the centred x: in [1, min(N, D)], r for r equal singular values."""
    return _effective_rank(_singular_values(x))


def participation_ratio(x: np.ndarray) -> float:
    """Participation ratio (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues: ~D for isotropic data."""
    return _participation_ratio(_singular_values(x))


# --------------------------------------------------------------------------- alignment / uniformity


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
    x = _matrix(x, "embeddings", min_rows=2)
    y = _labels(labels, len(x), "labels")
    if max_pairs < 1:
        raise ValueError(f"max_pairs: must be >= 1, got {max_pairs}")
    z = _normalise_rows(x)
    rng = _rng(seed)
    n = len(z)
    exact_all = n * (n - 1) // 2 <= max_pairs
    ui, uj = _all_pairs(n) if exact_all else _random_pairs(n, max_pairs, rng)
    uniformity = _log_mean_exp(-2.0 * _pair_sq_dists(z, ui, uj))
    ai, aj, exact_same = _same_label_pairs(y, max_pairs, rng)
    alignment = float(_pair_sq_dists(z, ai, aj).mean()) if len(ai) else None
    return AlignmentUniformity(alignment=alignment, uniformity=uniformity, alignment_pairs=len(ai),
                               uniformity_pairs=len(ui), exact=exact_all and exact_same)


# --------------------------------------------------------------------------- structure (all of the above)


@dataclass
class StructureResult:
    """Every structure metric of one model's embeddings (None: undefined or not requested)."""

    n_rows: int
    knn: KnnAgreement
    site: SiteSeparability | None  # None: fewer than 2 sources
    effective_rank: float
    participation_ratio: float
    alignment_uniformity: AlignmentUniformity
    preservation: Preservation | None  # None: no projection given


def structure_metrics(x: np.ndarray, class_labels: Sequence, sources: Sequence, groups: Sequence | None = None,
                      projection: np.ndarray | None = None, k: int = DEFAULT_K, metric: str = DEFAULT_KNN_METRIC,
                      projection_metric: str = "euclidean", seed: int = 0,
                      cv: int = DEFAULT_CV_FOLDS) -> StructureResult:
    """k-NN agreement, site separability, spectrum, alignment/uniformity and (with a projection) continuity."""
    x = _matrix(x, "embeddings", min_rows=2)
    _labels(class_labels, len(x), "class_labels")
    _labels(sources, len(x), "sources")
    site = site_separability(x, sources, groups, seed, cv) if len(set(map(str, sources))) >= 2 else None
    preservation = None
    if projection is not None:
        preservation = neighbourhood_preservation(x, projection, k, projection_metric, seed)
    s = _singular_values(x)
    return StructureResult(
        n_rows=len(x), knn=knn_label_agreement(x, class_labels, k, metric, seed), site=site,
        effective_rank=_effective_rank(s), participation_ratio=_participation_ratio(s),
        alignment_uniformity=alignment_uniformity(x, class_labels, seed), preservation=preservation)


# --------------------------------------------------------------------------- CKA


def _centred_unit(x: np.ndarray) -> np.ndarray | None:
    """Column-centred x scaled to unit Frobenius norm (CKA is scale-invariant); None if constant."""
    xc = x - x.mean(axis=0)
    norm = np.linalg.norm(xc)
    return None if norm == 0 else xc / norm


def _cka_centred(xc: np.ndarray, yc: np.ndarray, x_self: float, y_self: float) -> float:
    """||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) given the two self terms."""
    cross = yc.T @ xc
    return float(np.sum(cross * cross) / (x_self * y_self))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float | None:
    """Linear CKA (Kornblith et al. 2019) of row-aligned x [N, Dx] and y [N, Dy]; None if either is constant."""
    x = _matrix(x, "x", min_rows=2)
    y = _matrix(y, "y", min_rows=2)
    if len(x) != len(y):
        raise ValueError(f"y: has {len(y)} rows but x has {len(x)}; CKA needs row-aligned matrices")
    xc, yc = _centred_unit(x), _centred_unit(y)
    if xc is None or yc is None:
        return None
    return _cka_centred(xc, yc, float(np.linalg.norm(xc.T @ xc)), float(np.linalg.norm(yc.T @ yc)))


def cka_matrix(embeddings: Mapping[str, np.ndarray]) -> dict[tuple[str, str], float | None]:
    """Linear CKA of every ordered pair (a, b) of row-aligned models, a == b included (symmetric)."""
    if not embeddings:
        raise ValueError("embeddings: no models given")
    arrays = {name: _matrix(x, f"embeddings[{name!r}]", min_rows=2) for name, x in embeddings.items()}
    n_rows = {name: len(x) for name, x in arrays.items()}
    if len(set(n_rows.values())) != 1:
        raise ValueError(f"embeddings: models must have the same rows (aligned records); got row counts {n_rows}")
    # Centre, normalise and compute each self term once; each unordered pair costs one Dy x Dx product.
    centred = {name: _centred_unit(x) for name, x in arrays.items()}
    self_norm = {name: float(np.linalg.norm(c.T @ c)) for name, c in centred.items() if c is not None}
    out: dict[tuple[str, str], float | None] = {}
    for a, b in itertools.combinations_with_replacement(list(arrays), 2):
        ca, cb = centred[a], centred[b]
        value = None if ca is None or cb is None else _cka_centred(ca, cb, self_norm[a], self_norm[b])
        out[(a, b)] = out[(b, a)] = value
    return out


# --------------------------------------------------------------------------- SHAP quantities


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, 1 - 1/n = all mass on one of n; 0 if all zero."""
    v = np.sort(np.asarray(values, np.float64).ravel())
    if v.size == 0 or np.any(v < 0) or not np.all(np.isfinite(v)):
        raise ValueError("values: need at least one finite, non-negative value")
    total = v.sum()
    if total <= 0:
        return 0.0
    n = v.size
    return float(2.0 * np.sum(np.arange(1, n + 1) * v) / (n * total) - (n + 1.0) / n)


def _importance(mean_abs: np.ndarray, name: str) -> np.ndarray:
    """A finite, non-negative [C, D] importance matrix, or ValueError."""
    arr = _matrix(mean_abs, name)
    if np.any(arr < 0):
        raise ValueError(f"{name}: mean |SHAP| must be non-negative")
    return arr


def mean_dims_for_mass(mean_abs: np.ndarray, mass: float) -> int:
    """dims_for_mass per class, averaged over classes and rounded up (a diffuse class is not hidden)."""
    return int(math.ceil(np.mean([dims_for_mass(row, mass) for row in mean_abs]) - 1e-9))


@dataclass
class ShapConcentration:
    """How concentrated the mean |SHAP| importance is over embedding dimensions."""

    dims_for_50pct: int  # fewest dims carrying 50% of the mass, averaged over classes, rounded up
    dims_for_90pct: int  # the same for 90% (equals ShapResult.dims_for_90pct)
    gini: float  # Gini of each class's importance over dims, averaged over classes
    gini_per_class: list[float]


def shap_concentration(mean_abs: np.ndarray) -> ShapConcentration:
    """Dims for 50%/90% of the mean |SHAP| mass and the class-averaged Gini of mean_abs [C, D]."""
    m = _importance(mean_abs, "mean_abs")
    per_class = [gini(row) for row in m]
    return ShapConcentration(dims_for_50pct=mean_dims_for_mass(m, 0.5), dims_for_90pct=mean_dims_for_mass(m, 0.9),
                             gini=float(np.mean(per_class)), gini_per_class=per_class)


def top_k_dims(mean_abs: np.ndarray, k: int = DEFAULT_K) -> list[frozenset[int]]:
    """Per class, the set of its k most important dims (ties broken by lower index, as in core)."""
    m = _importance(mean_abs, "mean_abs")
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    k = min(k, m.shape[1])
    return [frozenset(int(d) for d in np.lexsort((np.arange(len(row)), -row))[:k]) for row in m]


def jaccard(a: set | frozenset, b: set | frozenset) -> float:
    """|a & b| / |a | b|; 1 for two empty sets."""
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def topk_jaccard(sets_a: Sequence[set], sets_b: Sequence[set]) -> list[float]:
    """Element-wise Jaccard of two equally long lists of sets (e.g. per-class top-k dims)."""
    if len(sets_a) != len(sets_b):
        raise ValueError(f"sets_b: has {len(sets_b)} sets but sets_a has {len(sets_a)}")
    return [jaccard(set(a), set(b)) for a, b in zip(sets_a, sets_b)]


def chance_jaccard(k: int, d: int) -> float:
    """Expected Jaccard of two independent uniformly random k-subsets of d dims (hypergeometric overlap)."""
    from scipy.stats import hypergeom

    if not 1 <= k <= d:
        raise ValueError(f"k: must be in [1, d={d}], got {k}")
    overlap = np.arange(max(0, 2 * k - d), k + 1)
    return float(np.sum(hypergeom(d, k, k).pmf(overlap) * overlap / (2 * k - overlap)))


@dataclass
class ShapStability:
    """Agreement of the per-class top-k SHAP dims across runs (seeds, fractions, datasets or sources)."""

    k: int  # dims per top-k set (clamped to D)
    mean_jaccard: float  # per-class mean pairwise Jaccard, averaged over classes
    per_class: dict[str, float]  # mean pairwise Jaccard of each class over all run pairs
    per_pair: dict[tuple[str, str], float]  # mean over classes of the Jaccard of each run pair (a, b), a before b
    chance: float  # expected Jaccard of random top-k sets (same k and D)


def shap_stability(mean_abs_runs: Sequence[np.ndarray], k: int = DEFAULT_K, class_names: Sequence[str] | None = None,
                   run_names: Sequence[str] | None = None) -> ShapStability:
    """Mean pairwise Jaccard of the per-class top-k dims over >= 2 mean |SHAP| matrices [C, D]."""
    if len(mean_abs_runs) < 2:
        raise ValueError(f"mean_abs_runs: needs at least 2 runs, got {len(mean_abs_runs)}")
    runs = [_importance(m, f"mean_abs_runs[{i}]") for i, m in enumerate(mean_abs_runs)]
    shapes = {r.shape for r in runs}
    if len(shapes) != 1:
        raise ValueError(f"mean_abs_runs: all runs must have the same [C, D] shape, got {sorted(shapes)}")
    c, d = runs[0].shape
    names = [str(i) for i in range(c)] if class_names is None else [str(v) for v in class_names]
    labels = [str(i) for i in range(len(runs))] if run_names is None else [str(v) for v in run_names]
    if len(names) != c or len(labels) != len(runs):
        raise ValueError(f"class_names/run_names: expected {c} class and {len(runs)} run names")
    top = [top_k_dims(r, k) for r in runs]
    pairs = list(itertools.combinations(range(len(runs)), 2))
    scores = np.array([topk_jaccard(top[a], top[b]) for a, b in pairs])  # [pairs, C]
    k_used = min(k, d)
    return ShapStability(
        k=k_used, mean_jaccard=float(scores.mean()),
        per_class={name: float(v) for name, v in zip(names, scores.mean(axis=0))},
        per_pair={(labels[a], labels[b]): float(v) for (a, b), v in zip(pairs, scores.mean(axis=1))},
        chance=chance_jaccard(k_used, d))


def cross_source_shap_agreement(mean_abs_by_source: Mapping[str, np.ndarray], k: int = DEFAULT_K,
                                class_names: Sequence[str] | None = None) -> ShapStability:
    """Do the same dims serve the same class on every source? shap_stability over per-source mean |SHAP|."""
    return shap_stability(list(mean_abs_by_source.values()), k, class_names, run_names=list(mean_abs_by_source))


def structure_summary(result: StructureResult) -> dict[str, object]:
    """A StructureResult as a flat JSON-ready dict (None = undefined); AnalysisClient.structure returns the same."""
    site, pres, au = result.site, result.preservation, result.alignment_uniformity
    return {
        "n_rows": result.n_rows, "knn_agreement": result.knn.agreement, "knn_chance": result.knn.chance,
        "k": result.knn.k, "metric": result.knn.metric, "knn_per_class": dict(result.knn.per_class),
        "site_separability": None if site is None else site.auroc,
        "site_per_source": {} if site is None else dict(site.per_source),
        "site_cv_folds": 0 if site is None else site.n_folds,
        "effective_rank": result.effective_rank, "participation_ratio": result.participation_ratio,
        "alignment": au.alignment, "uniformity": au.uniformity,
        "trustworthiness": None if pres is None else pres.trustworthiness,
        "continuity": None if pres is None else pres.continuity,
        "projection_k": 0 if pres is None else pres.k, "projection_metric": "" if pres is None else pres.metric,
    }
