"""Calibration metrics (ECE, Brier) against definition oracles, and known answers."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from services.probing.calibration import (N_BINS, brier_weighted, ece_weighted, reliability_bins)
from services.probing.metrics import point_metrics, weighted_metrics
from services.probing.probes import fit_probe


def ece_oracle(confidence: np.ndarray, target: np.ndarray, n_bins: int = N_BINS) -> float:
    """sum over bins of |bin| / n x |mean target - mean confidence|, bins ((m-1)/M, m/M] written out one by one."""
    total = 0.0
    for m in range(1, n_bins + 1):
        low, high = (m - 1) / n_bins, m / n_bins
        inside = [i for i, c in enumerate(confidence) if (low < c <= high) or (m == 1 and c == 0.0)]
        if inside:
            acc = sum(target[i] for i in inside) / len(inside)
            conf = sum(confidence[i] for i in inside) / len(inside)
            total += len(inside) / len(confidence) * abs(acc - conf)
    return total


def softmax_case(rng: np.random.Generator, n: int = 200, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.eye(k)[rng.integers(0, k, n)]
    return y, probs


def test_single_label_ece_and_brier_match_the_definitions():
    y, probs = softmax_case(np.random.default_rng(0))
    ones = np.ones((1, len(y)))
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y.argmax(axis=1)).astype(float)
    assert ece_weighted(y, probs, False, ones)[0] == pytest.approx(ece_oracle(confidence, correct), abs=1e-12)
    brier = np.mean([sum((probs[i, k] - y[i, k]) ** 2 for k in range(y.shape[1])) for i in range(len(y))])
    assert brier_weighted(y, probs, False, ones)[0] == pytest.approx(brier, abs=1e-12)


def test_multi_label_ece_and_brier_match_the_definitions_and_sklearn():
    rng = np.random.default_rng(1)
    probs = rng.uniform(size=(150, 3))
    y = (rng.uniform(size=(150, 3)) < probs ** 2).astype(float)
    ones = np.ones((1, 150))
    oracle = np.mean([ece_oracle(probs[:, k], y[:, k]) for k in range(3)])
    assert ece_weighted(y, probs, True, ones)[0] == pytest.approx(oracle, abs=1e-12)
    sk = np.mean([brier_score_loss(y[:, k], probs[:, k]) for k in range(3)])
    assert brier_weighted(y, probs, True, ones)[0] == pytest.approx(sk, abs=1e-12)


def test_integer_weights_equal_duplicated_records():
    y, probs = softmax_case(np.random.default_rng(2), n=60)
    counts = np.random.default_rng(3).integers(0, 4, 60)
    rows = np.repeat(np.arange(60), counts)
    for multi_label in (False, True):
        weighted = weighted_metrics(y, probs, "classification", multi_label, counts[None, :].astype(float))
        duplicated = point_metrics(y[rows], probs[rows], "classification", multi_label)
        for key in ("ece", "brier"):
            assert weighted[key][0] == pytest.approx(duplicated[key], abs=1e-12), (multi_label, key)


def test_a_perfectly_calibrated_probe_has_ece_near_zero_and_a_miscalibrated_one_does_not():
    rng = np.random.default_rng(4)
    p = rng.uniform(size=(20000, 1))
    y = (rng.uniform(size=(20000, 1)) < p).astype(float)  # P(y = 1 | p) = p
    ones = np.ones((1, 20000))
    assert ece_weighted(y, p, True, ones)[0] < 0.01
    assert ece_weighted(y, p ** 3, True, ones)[0] > 0.15  # overconfident in the negative class
    # Single-label: a softmax whose top class is right with probability equal to its confidence.
    conf = rng.uniform(0.5, 1.0, 20000)
    probs = np.stack([conf, 1 - conf], axis=1)
    truth = np.where(rng.uniform(size=20000) < conf, 0, 1)
    assert ece_weighted(np.eye(2)[truth], probs, False, ones)[0] < 0.01
    # A perfect, confident probe: ECE 0 and Brier 0 exactly.
    sure = np.eye(3)[rng.integers(0, 3, 50)]
    assert ece_weighted(sure, sure, False, np.ones((1, 50)))[0] == 0.0
    assert brier_weighted(sure, sure, False, np.ones((1, 50)))[0] == 0.0


def test_reliability_bins_cover_every_record_and_sit_on_the_diagonal_when_calibrated():
    rng = np.random.default_rng(5)
    p = rng.uniform(size=(5000, 1))
    y = (rng.uniform(size=(5000, 1)) < p).astype(float)
    bins = reliability_bins(y, p, True)
    assert sum(b["n"] for b in bins) == 5000 and len(bins) == N_BINS
    assert all(abs(b["frequency"] - b["confidence"]) < 0.05 for b in bins)


def test_every_probe_reports_ece_and_brier_with_cis():
    rng = np.random.default_rng(6)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 240)]
    x = (y @ rng.normal(size=(3, 6)) + rng.normal(size=(240, 6))).astype(np.float32)
    for kind in ("linear", "knn", "mlp"):
        result = fit_probe(x[:160], y[:160], x[160:], y[160:], ["a", "b", "c"], False, 0, probe=kind,
                           test_groups=np.arange(80).astype(str), bootstrap=50, bootstrap_seed=1)
        assert 0 <= result.metrics["ece"] <= 1 and 0 <= result.metrics["brier"] <= 2, kind
        assert result.metrics_ci_low["ece"] <= result.metrics["ece"] <= result.metrics_ci_high["ece"], kind
