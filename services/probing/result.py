"""ProbeResult: what every probe kind returns (metrics, CIs, outputs, a linear probe's model), and its builders."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.probing.metrics import point_metrics, score_test_split


@dataclass
class ProbeResult:
    """A fitted probe, its test-split scores, logits/probabilities, CIs and what a reader should know.

    coef/intercept/mean/scale/c describe the linear model of a linear probe (logistic or ridge; c is
    1/alpha for ridge); other probes leave them as empty arrays and c = 0. test_logits are decision
    scores: linear logits, log-probabilities (clipped at 1e-15) for knn/mlp, predicted values for a
    regression probe. test_probabilities is None for regression.
    """

    metrics: dict[str, float]
    per_class_auroc: dict[str, float]
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    c: float
    test_logits: np.ndarray
    warnings: list[str] = field(default_factory=list)
    probe: str = "linear"
    target_type: str = "classification"
    test_probabilities: np.ndarray | None = None
    hyperparameters: dict[str, float] = field(default_factory=dict)
    metrics_ci_low: dict[str, float] = field(default_factory=dict)
    metrics_ci_high: dict[str, float] = field(default_factory=dict)
    bootstrap: int = 0


_EMPTY = np.zeros((0,))
_EPS = 1e-15


def _log_scores(probs: np.ndarray) -> np.ndarray:
    """Decision scores of a probability model: log-probabilities clipped at 1e-15 (finite)."""
    return np.log(np.clip(probs, _EPS, 1.0))


def classification_result(probe: str, test_y: np.ndarray, probs: np.ndarray, class_names: list[str],
                          multi_label: bool, hyper: dict[str, float], notes: list[str]) -> ProbeResult:
    """ProbeResult of a non-linear classifier (no linear model)."""
    metrics, per_class, metric_notes = score_test_split(test_y, probs, class_names, multi_label)
    return ProbeResult(metrics=metrics, per_class_auroc=per_class, coef=_EMPTY, intercept=_EMPTY, mean=_EMPTY,
                       scale=_EMPTY, c=0.0, test_logits=_log_scores(probs), warnings=notes + metric_notes,
                       probe=probe, test_probabilities=probs, hyperparameters=hyper)


def regression_result(probe: str, test_y: np.ndarray, preds: np.ndarray, hyper: dict[str, float],
                      notes: list[str], linear: tuple | None = None) -> ProbeResult:
    """ProbeResult of a regression probe; `linear` = (coef, intercept, mean, scale, c) for ridge."""
    coef, intercept, mean, scale, c = linear or (_EMPTY, _EMPTY, _EMPTY, _EMPTY, 0.0)
    return ProbeResult(metrics=point_metrics(test_y, preds, "regression", False), per_class_auroc={}, coef=coef,
                       intercept=intercept, mean=mean, scale=scale, c=c, test_logits=preds, warnings=notes,
                       probe=probe, target_type="regression", hyperparameters=hyper)
