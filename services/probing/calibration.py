"""Calibration of a probe's probabilities: expected calibration error, Brier score, reliability bins.

Every function takes record weights W [B, n] (one row per bootstrap resample; unit weights give the
point estimate), as services.probing.metrics does, so the same code gives values and CIs. With p_i the
probabilities of record i, y_i its 0/1 targets, w_i its weight and M = N_BINS equal-width bins
I_m = ((m-1)/M, m/M] (a score of exactly 0 falls in the first):

Single-label (softmax) probes, top-label calibration (Guo et al., 2017):
    c_i = max_k p_ik (confidence), a_i = [argmax_k p_ik = argmax_k y_ik] (correct),
    ECE   = sum_m |sum_{i: c_i in I_m} w_i (a_i - c_i)| / sum_i w_i
          = sum_m (W_m / W) |acc(I_m) - conf(I_m)|,
    Brier = sum_i w_i sum_k (p_ik - y_ik)^2 / sum_i w_i            (Brier, 1950; 0 = perfect, at most 2).
Multi-label (one sigmoid per class) probes, each class a binary forecast of y_ik by p_ik:
    ECE_k = sum_m |sum_{i: p_ik in I_m} w_i (y_ik - p_ik)| / sum_i w_i,   ECE = mean_k ECE_k,
    Brier = sum_i w_i mean_k (p_ik - y_ik)^2 / sum_i w_i.
A perfectly calibrated probe (P(y = 1 | p) = p) has ECE -> 0 as n grows; at finite n what remains is
sampling noise in each bin, of order sqrt(M / n) (so a few hundred test ECGs cannot show ECE below ~0.05).
"""
from __future__ import annotations

import numpy as np

N_BINS = 10


def bin_index(scores: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin m - 1 in 0..n_bins-1 of each score: I_m = ((m-1)/M, m/M], 0 in the first."""
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    return np.clip(np.ceil(scores * n_bins).astype(int) - 1, 0, n_bins - 1)


def _binned_gap(target: np.ndarray, score: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """sum_m |sum_{i in bin m} w_i (target_i - score_i)| / sum_i w_i, per weight row [B]."""
    onehot = np.zeros((score.shape[0], n_bins))
    onehot[np.arange(score.shape[0]), bin_index(score, n_bins)] = 1.0
    gap = weights @ (onehot * (target - score)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(gap).sum(axis=1) / weights.sum(axis=1)


def ece_weighted(y: np.ndarray, probs: np.ndarray, multi_label: bool, weights: np.ndarray,
                 n_bins: int = N_BINS) -> np.ndarray:
    """Expected calibration error [B] (top-label for single-label probes, class mean for multi-label)."""
    y, probs = np.asarray(y, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    if multi_label:
        return np.mean([_binned_gap(y[:, k], probs[:, k], weights, n_bins) for k in range(y.shape[1])], axis=0)
    confidence = probs.max(axis=1)
    correct = (np.argmax(probs, axis=1) == np.argmax(y, axis=1)).astype(np.float64)
    return _binned_gap(correct, confidence, weights, n_bins)


def brier_weighted(y: np.ndarray, probs: np.ndarray, multi_label: bool, weights: np.ndarray) -> np.ndarray:
    """Brier score [B]: squared error of the probabilities, summed over classes (single-label) or averaged
    over them (multi-label), then weight-averaged over records."""
    y, probs = np.asarray(y, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    per_record = ((probs - y) ** 2).mean(axis=1) if multi_label else ((probs - y) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ per_record) / weights.sum(axis=1)


def reliability_bins(y: np.ndarray, probs: np.ndarray, multi_label: bool,
                     n_bins: int = N_BINS) -> list[dict[str, float]]:
    """The reliability diagram's points: per non-empty bin, its mean confidence, observed frequency and count
    (top-label for single-label probes; every (record, class) pair pooled for multi-label)."""
    y, probs = np.asarray(y, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    if multi_label:
        score, target = probs.ravel(), y.ravel()
    else:
        score = probs.max(axis=1)
        target = (np.argmax(probs, axis=1) == np.argmax(y, axis=1)).astype(np.float64)
    where = bin_index(score, n_bins)
    out = []
    for m in range(n_bins):
        inside = where == m
        if inside.any():
            out.append({"low": m / n_bins, "high": (m + 1) / n_bins, "confidence": float(score[inside].mean()),
                        "frequency": float(target[inside].mean()), "n": int(inside.sum())})
    return out
