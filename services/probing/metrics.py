"""Test-split metrics as functions of record weights, and patient-level bootstrap confidence intervals.

Every metric here takes a weight matrix W [B, n] (one row per resample, entry = how many times the
record was drawn) and returns one value per row, so a single vectorised code path gives both the
bootstrap replicates and, with W = ones([1, n]), the plain point estimate. Integer weights make a
weighted metric equal to the unweighted metric of the resampled (duplicated) records exactly, ties
included: AUROC counts a tied positive/negative pair as 1/2, average precision steps at each distinct
score, as sklearn does.

Bootstrap. The resampling unit is a test group (a patient); groups are drawn with replacement, G
draws from G groups, and every record of a drawn group enters with that group's draw count. The
95% CI is the 2.5th/97.5th percentile of the replicates that are defined (a class absent from a
replicate leaves that replicate out of that class's AUROC; macro metrics average the classes that
are defined in the replicate). One seed fixes all resamples, so two models scored with the same
seed and groups see identical resamples.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

CLASSIFICATION_METRICS = ("auroc_macro", "auprc_macro", "accuracy", "balanced_accuracy", "f1_macro")
REGRESSION_METRICS = ("mae", "rmse", "r2", "pearson_r")
# Resamples per block: bounds the [B, n] weight matrices to ~block * n * 8 bytes.
BLOCK = 128
CI_LEVEL = 0.95


# ---------------------------------------------------------------------------------------------
# Ranking metrics per class
# ---------------------------------------------------------------------------------------------

def tie_blocks(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) weight [B, U] of each run of tied scores, in ascending score order."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    is_pos = np.asarray(y, dtype=bool)[order].astype(weights.dtype)
    # Resamples along axis 0, records along the contiguous axis 1: numpy's cumsum is fastest there.
    w = weights[:, order]
    pos = w * is_pos
    if np.all(s[1:] != s[:-1]):
        return pos, w - pos  # no ties: every record is its own block
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(pos, starts, axis=1)
    return pos, np.add.reduceat(w, starts, axis=1) - pos


def auroc_from_blocks(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC [B] from tie-block weights [B, U] (NaN where a side has zero weight)."""
    # Each positive beats every negative in a lower tie block and half-beats those in its own block.
    neg_below = np.cumsum(neg, axis=1) - 0.5 * neg
    num = np.einsum("bu,bu->b", pos, neg_below)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def average_precision_from_blocks(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision [B] (sklearn's step-wise definition) from tie-block weights [B, U]; NaN without positives."""
    tp = pos[:, ::-1]  # thresholds from the highest score down
    tp_cum = np.cumsum(tp, axis=1)
    all_cum = tp_cum + np.cumsum(neg[:, ::-1], axis=1)
    precision = np.divide(tp_cum, all_cum, out=np.zeros_like(tp_cum), where=all_cum > 0)
    total = tp.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.einsum("bu,bu->b", tp, precision) / total, np.nan)


def auroc_weighted(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC [B] of one binary column under each weight row (NaN where a side has zero weight)."""
    return auroc_from_blocks(*tie_blocks(y, scores, weights))


def average_precision_weighted(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision [B] of one binary column under each weight row; NaN without positives."""
    return average_precision_from_blocks(*tie_blocks(y, scores, weights))


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN where a row has no defined value."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    sums = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


# ---------------------------------------------------------------------------------------------
# Classification metric suites
# ---------------------------------------------------------------------------------------------

def evaluable_columns(y: np.ndarray) -> np.ndarray:
    """Columns with both positives and negatives in the (full) test split."""
    positives = np.asarray(y).sum(axis=0)
    return (positives > 0) & (positives < y.shape[0])


def per_class_auroc_weighted(y: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC [B, C]; NaN for columns not evaluable in the full test split or in a replicate."""
    mask = evaluable_columns(y)
    out = np.full((weights.shape[0], y.shape[1]), np.nan)
    for k in np.flatnonzero(mask):
        out[:, k] = auroc_weighted(y[:, k], probs[:, k], weights)
    return out


def _multiclass_labels(y: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro F1 of the argmax prediction (classes present in the test split)."""
    y_true, y_pred = np.argmax(y, axis=1), np.argmax(probs, axis=1)
    correct = (y_true == y_pred).astype(np.float64)
    present = np.flatnonzero(y.sum(axis=0) > 0)
    true_k = (y_true[:, None] == present[None, :]).astype(np.float64)
    pred_k = (y_pred[:, None] == present[None, :]).astype(np.float64)
    tp = weights @ (true_k * pred_k)
    fp, fn = weights @ ((1 - true_k) * pred_k), weights @ (true_k * (1 - pred_k))
    f1_den = 2 * tp + fp + fn
    # sklearn's zero_division=0: a class neither predicted nor present scores 0.
    f1 = np.divide(2 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)
    return {"accuracy": _ratio(weights @ correct, weights.sum(axis=1)),
            "balanced_accuracy": _nanmean_rows(_ratio(tp, tp + fn)),
            "f1_macro": f1.mean(axis=1)}


def _multilabel_labels(y: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Subset accuracy, plus macro F1 and balanced accuracy at 0.5 over evaluable labels."""
    pred = (probs >= 0.5).astype(np.float64)
    exact = np.all(pred == y, axis=1).astype(np.float64)
    out = {"accuracy": _ratio(weights @ exact, weights.sum(axis=1))}
    mask = evaluable_columns(y)
    if not mask.any():
        return out
    yk, pk = y[:, mask].astype(np.float64), pred[:, mask]
    tp, fn = weights @ (yk * pk), weights @ (yk * (1 - pk))
    tn, fp = weights @ ((1 - yk) * (1 - pk)), weights @ ((1 - yk) * pk)
    f1_den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)
    out["balanced_accuracy"] = _nanmean_rows((_ratio(tp, tp + fn) + _ratio(tn, tn + fp)) / 2)
    out["f1_macro"] = f1.mean(axis=1)
    return out


def classification_replicates(y: np.ndarray, probs: np.ndarray, multi_label: bool,
                              weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every classification metric [B] under each weight row (keys as in CLASSIFICATION_METRICS)."""
    y = np.asarray(y, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    out = _multilabel_labels(y, probs, weights) if multi_label else _multiclass_labels(y, probs, weights)
    columns = np.flatnonzero(evaluable_columns(y))
    if columns.size:
        blocks = [tie_blocks(y[:, k], probs[:, k], weights) for k in columns]
        out["auroc_macro"] = _nanmean_rows(np.stack([auroc_from_blocks(*b) for b in blocks], axis=1))
        out["auprc_macro"] = _nanmean_rows(np.stack([average_precision_from_blocks(*b) for b in blocks], axis=1))
    return out


# ---------------------------------------------------------------------------------------------
# Regression metric suite
# ---------------------------------------------------------------------------------------------

def regression_replicates(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """mae, rmse, r2 and pearson_r [B] (each the mean over target columns) under each weight row."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    # Centre on the unweighted means first so weighted second moments do not cancel catastrophically.
    yc, pc = y - y.mean(axis=0), pred - y.mean(axis=0)
    err = pc - yc
    sw = weights.sum(axis=1, keepdims=True)
    my, mp = (weights @ yc) / sw, (weights @ pc) / sw
    mse = (weights @ err ** 2) / sw
    var_y = (weights @ yc ** 2) / sw - my ** 2
    var_p = (weights @ pc ** 2) / sw - mp ** 2
    cov = (weights @ (yc * pc)) / sw - my * mp
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(var_y > 0, 1 - mse / var_y, np.nan)
        pearson = np.where((var_y > 0) & (var_p > 0), cov / np.sqrt(np.maximum(var_y * var_p, 0)), np.nan)
    return {"mae": ((weights @ np.abs(err)) / sw).mean(axis=1), "rmse": np.sqrt(mse).mean(axis=1),
            "r2": _nanmean_rows(r2), "pearson_r": _nanmean_rows(pearson)}


def point_metrics(y: np.ndarray, outputs: np.ndarray, target_type: str, multi_label: bool) -> dict[str, float]:
    """The metric suite at unit weights (finite values only)."""
    ones = np.ones((1, np.asarray(y).shape[0]))
    reps = (regression_replicates(y, outputs, ones) if target_type == "regression"
            else classification_replicates(y, outputs, multi_label, ones))
    return {k: float(v[0]) for k, v in reps.items() if np.isfinite(v[0])}


# ---------------------------------------------------------------------------------------------
# Patient-level bootstrap
# ---------------------------------------------------------------------------------------------

def group_index(groups: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """Group number of each record (0..G-1); one group per record when groups is None or empty."""
    if groups is None or len(groups) == 0:
        return np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"test groups has {groups.shape[0]} entries but the test split has {n} records")
    return np.unique(groups, return_inverse=True)[1].reshape(-1)


def resample_weights(group_of: np.ndarray, n_boot: int, seed: int, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Blocks of record weights [b, n]: each row draws G groups with replacement (numpy Generator(seed))."""
    rng = np.random.default_rng(int(seed) % (2 ** 32))
    n_groups = int(group_of.max()) + 1 if group_of.size else 0
    done = 0
    while done < n_boot:
        b = min(block, n_boot - done)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        flat = (np.arange(b)[:, None] * n_groups + draws).ravel()
        counts = np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups).astype(np.float64)
        yield counts[:, group_of]
        done += b


def bootstrap_replicates(fn: Callable[[np.ndarray], dict[str, np.ndarray]], group_of: np.ndarray, n_boot: int,
                         seed: int) -> dict[str, np.ndarray]:
    """fn evaluated on n_boot group resamples, concatenated per key."""
    parts: dict[str, list[np.ndarray]] = {}
    for weights in resample_weights(group_of, n_boot, seed):
        for key, values in fn(weights).items():
            parts.setdefault(key, []).append(values)
    return {key: np.concatenate(values) for key, values in parts.items()}


def percentile_ci(replicates: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float] | None:
    """(low, high) percentile interval of the defined replicates; None when none is defined."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(y: np.ndarray, outputs: np.ndarray, target_type: str, multi_label: bool,
                 groups: Sequence | np.ndarray | None, n_boot: int, seed: int,
                 keys: Sequence[str] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(ci_low, ci_high) per metric from a patient-level percentile bootstrap (empty when n_boot == 0)."""
    if n_boot <= 0:
        return {}, {}
    y, outputs = np.asarray(y, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
    group_of = group_index(groups, y.shape[0])
    if target_type == "regression":
        reps = bootstrap_replicates(lambda w: regression_replicates(y, outputs, w), group_of, n_boot, seed)
    else:
        reps = bootstrap_replicates(lambda w: classification_replicates(y, outputs, multi_label, w), group_of,
                                    n_boot, seed)
    low, high = {}, {}
    for key, values in reps.items():
        if keys is not None and key not in keys:
            continue
        ci = percentile_ci(values)
        if ci is not None:
            low[key], high[key] = ci
    return low, high
