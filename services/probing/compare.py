"""Paired comparisons of two models' test-set outputs: patient-level paired bootstrap and DeLong's test.

paired_bootstrap resamples test groups (patients) with replacement, scores both models on the same
resample and reports the difference a - b: its point value, percentile 95% CI and a two-sided
bootstrap p-value p = min(1, 2 * min((#{d_b <= 0} + 1) / (B + 1), (#{d_b >= 0} + 1) / (B + 1))), i.e.
twice the smaller tail mass of the replicate differences at zero (the +1s keep p > 0 with finite B;
identical models give d_b = 0 for every b and p = 1).

delong_test compares two correlated AUROCs on the same records with DeLong, DeLong & Clarke-Pearson
(1988), computed with Sun & Xu's (2014) O(n log n) midrank algorithm. delong_macro runs it per
class (one-vs-rest) and summarises: the mean AUROC difference over classes, per-class p-values and
Holm-adjusted p-values (family = the classes compared). Classes share records, so their tests are
not independent; Holm controls the family-wise error under any dependence. It gives no single test
of the macro difference: use paired_bootstrap(metric="auroc_macro") for that.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import norm, rankdata

from services.probing.bootstrap import bootstrap_replicates, group_index, percentile_ci
from services.probing.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, weighted_metrics


# ---------------------------------------------------------------------------------------------
# Paired bootstrap
# ---------------------------------------------------------------------------------------------

def _metric_fn(metric: str, y: np.ndarray, outputs: np.ndarray, multi_label: bool):
    """weights -> metric [B] for one model's outputs."""
    if metric in REGRESSION_METRICS:
        return lambda w: weighted_metrics(y, outputs, "regression", False, w)[metric]
    if metric in CLASSIFICATION_METRICS:
        return lambda w: weighted_metrics(y, outputs, "classification", multi_label, w).get(
            metric, np.full(w.shape[0], np.nan))
    raise ValueError(f"unknown metric {metric!r}; choose from {CLASSIFICATION_METRICS + REGRESSION_METRICS}")


def _as_2d(name: str, array: np.ndarray) -> np.ndarray:
    """A float64 [n, C] view (a 1-D array becomes one column)."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {list(out.shape)}")
    return out


def _bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of the replicate differences at zero (see module docstring)."""
    b = diffs.size
    below, above = (np.count_nonzero(diffs <= 0) + 1) / (b + 1), (np.count_nonzero(diffs >= 0) + 1) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def paired_bootstrap(y: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray,
                     groups: Sequence | np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                     metric: str = "auroc_macro", multi_label: bool = False) -> dict[str, float]:
    """Difference metric(a) - metric(b) on the same patient resamples: {diff, ci_low, ci_high, p_value, n_boot}."""
    y, a, b = _as_2d("y", y), _as_2d("probs_a", probs_a), _as_2d("probs_b", probs_b)
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"y, probs_a and probs_b must have the same shape, got {y.shape}, {a.shape}, {b.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    fa, fb = _metric_fn(metric, y, a, multi_label), _metric_fn(metric, y, b, multi_label)
    ones = np.ones((1, y.shape[0]))
    diff = float(fa(ones)[0] - fb(ones)[0])
    if not np.isfinite(diff):
        raise ValueError(f"{metric} is undefined on this test set")
    reps = bootstrap_replicates(lambda w: {"d": fa(w) - fb(w)}, group_index(groups, y.shape[0]), n_boot, seed)["d"]
    reps = reps[np.isfinite(reps)]
    low, high = percentile_ci(reps) or (np.nan, np.nan)
    return {"diff": diff, "ci_low": low, "ci_high": high, "p_value": _bootstrap_p(reps), "n_boot": int(reps.size)}


# ---------------------------------------------------------------------------------------------
# DeLong
# ---------------------------------------------------------------------------------------------

def _structural_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aucs [k], V10 [k, m] over positives, V01 [k, n] over negatives) by Sun & Xu's midrank algorithm."""
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = rankdata(pos, axis=1)  # midranks among positives
    ty = rankdata(neg, axis=1)  # midranks among negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks among all
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (tz[:, :m] - tx) / n  # share of negatives each positive beats (ties 1/2)
    v01 = 1 - (tz[:, m:] - ty) / m  # share of positives beating each negative
    return aucs, v10, v01


def delong_covariance(y_binary: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROCs [k], DeLong covariance [k, k]) of k score vectors [k, N] against one binary label."""
    y = np.asarray(y_binary).astype(bool).reshape(-1)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    aucs, v10, v01 = _structural_components(y, scores)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y_binary: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """DeLong's test of AUROC(a) = AUROC(b) on the same records: {auc_a, auc_b, diff, se, z, p_value}."""
    aucs, cov = delong_covariance(y_binary, np.stack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-300 or not np.isfinite(var):
        # Identical (or identically ranked) scores: no variance of the difference.
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        z = diff / np.sqrt(var)
    p = 1.0 if z == 0 else float(2 * norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "se": float(np.sqrt(max(var, 0.0))),
            "z": float(z), "p_value": min(p, 1.0)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    k = p.size
    adjusted = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adjusted
    return out.tolist()


def delong_macro(y: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray,
                 class_names: Sequence[str] | None = None, alpha: float = 0.05) -> dict:
    """Per-class (one-vs-rest) DeLong tests with Holm adjustment, and the mean AUROC difference over classes."""
    y, a, b = _as_2d("y", y), _as_2d("probs_a", probs_a), _as_2d("probs_b", probs_b)
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"y, probs_a and probs_b must have the same shape, got {y.shape}, {a.shape}, {b.shape}")
    names = list(class_names) if class_names is not None else [str(k) for k in range(y.shape[1])]
    positives = y.sum(axis=0)
    testable = [k for k in range(y.shape[1]) if 2 <= positives[k] <= y.shape[0] - 2]
    if not testable:
        raise ValueError("no class has at least 2 positives and 2 negatives")
    tests = [delong_test(y[:, k], a[:, k], b[:, k]) for k in testable]
    adjusted = holm([t["p_value"] for t in tests])
    per_class = {names[k]: {**t, "p_holm": p} for k, t, p in zip(testable, tests, adjusted)}
    return {"diff_macro": float(np.mean([t["diff"] for t in tests])),
            "auc_a_macro": float(np.mean([t["auc_a"] for t in tests])),
            "auc_b_macro": float(np.mean([t["auc_b"] for t in tests])),
            "per_class": per_class, "min_p_holm": float(min(adjusted)),
            "n_significant": int(sum(p < alpha for p in adjusted)), "alpha": float(alpha),
            "skipped": [names[k] for k in range(y.shape[1]) if k not in testable]}
