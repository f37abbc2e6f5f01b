"""SHAP quantities: concentration of the importance over dims, and top-k stability across runs or sources."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from services.analysis.inputs import DEFAULT_K, as_matrix

SHAP_MASS = 0.9


def dims_for_mass(importance: np.ndarray, mass: float = SHAP_MASS) -> int:
    """Fewest dimensions whose sorted importances reach `mass` of the total (0 if the total is 0)."""
    ordered = np.sort(np.asarray(importance, np.float64))[::-1]
    total = ordered.sum()
    if total <= 0:
        return 0
    # The relative slack keeps exact ties (e.g. 9 of 10 equal dims = 90%) from failing on rounding.
    reached = np.cumsum(ordered) >= mass * total * (1 - 1e-12)
    return int(np.argmax(reached)) + 1


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
    arr = as_matrix(mean_abs, name)
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
