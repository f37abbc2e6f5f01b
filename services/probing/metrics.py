"""Test-split metrics as functions of record weights: one code path for point estimates and bootstrap replicates.

`weighted_metrics` takes a weight matrix W [B, n] (one row per resample, entry = how many times the
record was drawn) and returns every metric as one value per row. The point estimate is the
unit-weight case W = ones([1, n]) (`point_metrics`, `score_test_split`); a bootstrap replicate is a
resampled-weight row (services.probing.bootstrap). Integer weights make a weighted metric equal to
the unweighted metric of the resampled (duplicated) records, ties included: AUROC counts a tied
positive/negative pair as 1/2, average precision steps at each distinct score, as sklearn does.

At unit weights every value is bit-identical to the scikit-learn computation the probes reported
before the two paths were merged (roc_auc_score, average_precision_score, f1_score), so published
numbers do not move: the arithmetic below follows sklearn's order of operations where it matters.
ece and brier (schema 1.3) come from services.probing.calibration, on the same weight rows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from services.probing.calibration import brier_weighted, ece_weighted

# ece and brier (lower is better) are the calibration of the probabilities: services.probing.calibration.
CLASSIFICATION_METRICS = ("auroc_macro", "auprc_macro", "accuracy", "balanced_accuracy", "f1_macro", "ece", "brier")
REGRESSION_METRICS = ("mae", "rmse", "r2", "pearson_r")
_EPS = 1e-15


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
    tp = np.cumsum(pos[:, ::-1], axis=1)  # thresholds from the highest score down
    seen = tp + np.cumsum(neg[:, ::-1], axis=1)
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    total = tp[:, -1:]
    recall = np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)
    # sklearn's arithmetic, step for step: sum over thresholds of (recall step) x precision, the
    # steps taken from the lowest threshold up (a contiguous row, as sklearn's 1-D array).
    steps = np.ascontiguousarray((np.diff(recall, axis=1, prepend=0.0) * precision)[:, ::-1])
    return np.where(total[:, 0] > 0, steps.sum(axis=1), np.nan)


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


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 per column, 0 where it is undefined (sklearn's zero_division=0)."""
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)


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
    return {"accuracy": _ratio(weights @ correct, weights.sum(axis=1)),
            "balanced_accuracy": _nanmean_rows(_ratio(tp, tp + fn)),
            "f1_macro": _f1(tp, fp, fn).mean(axis=1)}


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
    out["balanced_accuracy"] = _nanmean_rows((_ratio(tp, tp + fn) + _ratio(tn, tn + fp)) / 2)
    f1 = _f1(tp, fp, fn)
    if mask.sum() == 1:
        # sklearn's f1_score reads a single label column as a binary target and macro-averages the
        # F1 of its negatives and positives; the probes have always reported that value, so it stays.
        f1 = np.stack([_f1(tn, fn, fp)[:, 0], f1[:, 0]], axis=1)
    out["f1_macro"] = f1.mean(axis=1)
    return out


def _classification(y: np.ndarray, probs: np.ndarray, multi_label: bool, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every classification metric [B] under each weight row (keys as in CLASSIFICATION_METRICS)."""
    y = np.asarray(y, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    out = _multilabel_labels(y, probs, weights) if multi_label else _multiclass_labels(y, probs, weights)
    out["ece"] = ece_weighted(y, probs, multi_label, weights)
    out["brier"] = brier_weighted(y, probs, multi_label, weights)
    columns = np.flatnonzero(evaluable_columns(y))
    if columns.size:
        blocks = [tie_blocks(y[:, k], probs[:, k], weights) for k in columns]
        out["auroc_macro"] = _nanmean_rows(np.stack([auroc_from_blocks(*b) for b in blocks], axis=1))
        out["auprc_macro"] = _nanmean_rows(np.stack([average_precision_from_blocks(*b) for b in blocks], axis=1))
    return out


# ---------------------------------------------------------------------------------------------
# Regression metric suite
# ---------------------------------------------------------------------------------------------

def _regression(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
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


# ---------------------------------------------------------------------------------------------
# The one scoring function, and its unit-weight forms
# ---------------------------------------------------------------------------------------------

def weighted_metrics(y: np.ndarray, outputs: np.ndarray, target_type: str, multi_label: bool,
                     weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of the target type [B] under each weight row [B, n] (NaN where undefined in a row)."""
    if target_type == "regression":
        return _regression(y, outputs, weights)
    return _classification(y, outputs, multi_label, weights)


def point_metrics(y: np.ndarray, outputs: np.ndarray, target_type: str, multi_label: bool) -> dict[str, float]:
    """The metric suite at unit weights (finite values only)."""
    ones = np.ones((1, np.asarray(y).shape[0]))
    return {k: float(v[0]) for k, v in weighted_metrics(y, outputs, target_type, multi_label, ones).items()
            if np.isfinite(v[0])}


def _skip_notes(y: np.ndarray, class_names: Sequence[str], mask: np.ndarray) -> list[str]:
    """One warning per class left out of the macro averages, with the reason."""
    notes = []
    for k in np.flatnonzero(~mask):
        side = "positives" if y[:, k].sum() == 0 else "negatives"
        notes.append(f"class {class_names[k]!r} left out of macro metrics: test split has no {side}")
    return notes


def score_test_split(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                     multi_label: bool) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """(macro metrics, per-class AUROC, warnings) on the test split; never NaN, omitted when undefined."""
    y = np.asarray(y, dtype=np.float64)
    mask = evaluable_columns(y)
    notes = _skip_notes(y, class_names, mask)
    if not mask.any():
        notes.append("no class has both positives and negatives in the test split: auroc_macro and "
                     "auprc_macro omitted")
    aurocs = per_class_auroc_weighted(y, probs, np.ones((1, y.shape[0])))[0]
    per_class = {class_names[k]: float(aurocs[k]) for k in np.flatnonzero(mask)}
    return point_metrics(y, probs, "classification", multi_label), per_class, notes


def log_loss(y: np.ndarray, probs: np.ndarray, multi_label: bool) -> float:
    """Mean negative log-likelihood of clipped probabilities (per label for multi-label)."""
    p = np.clip(probs, _EPS, 1 - _EPS)
    if multi_label:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[y.astype(bool)])))
