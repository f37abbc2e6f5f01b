"""Linear probes on frozen embeddings: standardised logistic regression (classes) and ridge (regression).

Logistic protocol (the seed paper's): features are standardised on the training split, then an L2
logistic regression is fitted (services.probing.logistic) with the inverse regularisation strength C
chosen by stratified inner cross-validation on the training split only (services.probing.c_selection).
The test split is touched once, to score the chosen model.

Ridge: standardised ridge regression, alpha by efficient leave-one-out CV (sklearn RidgeCV, one alpha
shared by all targets), returned in the same convention with c = 1 / alpha.

Sweep options (keyword-only, off by default so a plain call keeps the protocol above exactly):
`standardiser=(mean, scale)` uses given standardisation statistics instead of fitting them on the
training subset (inner-CV folds then share them too), and `warm_start=True` walks the C grid along a
warm-started path (c_selection.select_c_warm).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import RidgeCV

from services.probing.blas import single_threaded_blas
from services.probing.c_selection import check_cs, select_c, select_c_warm
from services.probing.inputs import (as_matrix, check_inputs, check_standardiser, check_trainable,
                                     standardiser_for)
from services.probing.logistic import final_fit, linear_logits, probabilities
from services.probing.metrics import score_test_split
from services.probing.result import ProbeResult, regression_result

DEFAULT_RIDGE_ALPHAS: tuple[float, ...] = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     class_names: Sequence[str], multi_label: bool, seed: int,
                     cs: Sequence[float] | None = None, cv_folds: int = 5, *,
                     standardiser: tuple[np.ndarray, np.ndarray] | None = None,
                     warm_start: bool = False) -> ProbeResult:
    """Fit a standardised logistic-regression probe (C by inner CV on train) and score it on test."""
    train_x, train_y = as_matrix("train_x", train_x), as_matrix("train_y", train_y)
    test_x, test_y = as_matrix("test_x", test_x), as_matrix("test_y", test_y)
    class_names = [str(name) for name in class_names]
    check_inputs(train_x, train_y, test_x, test_y, class_names, multi_label)
    check_trainable(train_y, class_names, multi_label)
    if cv_folds < 2:
        raise ValueError(f"cv_folds must be at least 2, got {cv_folds}")
    prescaled = standardiser is not None
    if prescaled:
        mean, scale = check_standardiser(standardiser, train_x.shape[1])
        train_x = (train_x - mean) / scale
    notes: list[str] = []
    with single_threaded_blas():
        if warm_start:
            c, init = select_c_warm(train_x, train_y, class_names, multi_label, seed, check_cs(cs), cv_folds,
                                    notes, prescaled)
        else:
            c, init = select_c(train_x, train_y, class_names, multi_label, seed, check_cs(cs), cv_folds, notes,
                               prescaled), None
        fit = final_fit(train_x, train_y, c, seed, multi_label, notes, prescaled, init)
        if prescaled:
            fit = fit._replace(mean=mean, scale=scale)
        logits = linear_logits(test_x, fit.coef, fit.intercept, fit.mean, fit.scale)
    probs = probabilities(logits, multi_label)
    metrics, per_class, metric_notes = score_test_split(test_y, probs, class_names, multi_label)
    return ProbeResult(metrics=metrics, per_class_auroc=per_class, coef=fit.coef, intercept=fit.intercept,
                       mean=fit.mean, scale=fit.scale, c=float(c), test_logits=logits,
                       warnings=notes + metric_notes, test_probabilities=probs,
                       hyperparameters={"c": float(c)})


def fit_ridge(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              alphas: Sequence[float] | None, standardiser: tuple | None) -> ProbeResult:
    """Standardised ridge regression, alpha by efficient leave-one-out CV; returned as a linear model."""
    mean, scale = standardiser_for(train_x, standardiser)
    grid = sorted(set(float(a) for a in (alphas or DEFAULT_RIDGE_ALPHAS)))
    if any(a <= 0 for a in grid):
        raise ValueError(f"every ridge alpha must be > 0, got {grid}")
    model = RidgeCV(alphas=grid).fit((train_x - mean) / scale, train_y)
    coef = np.atleast_2d(model.coef_).reshape(train_y.shape[1], -1)
    intercept = np.atleast_1d(model.intercept_).reshape(-1)
    preds = ((test_x - mean) / scale) @ coef.T + intercept
    alpha = float(model.alpha_)
    return regression_result("linear", test_y, preds, {"alpha": alpha}, [],
                             (coef, intercept, mean, scale, 1.0 / alpha))
