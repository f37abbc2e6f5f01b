"""One entry point for every probe kind and target type, with test metrics and bootstrap CIs (no gRPC).

Probe kinds (`probe`):
  linear  classification: core.fit_linear_probe (standardised L2 logistic regression, C by inner CV);
          regression: standardised ridge regression, alpha by efficient leave-one-out CV (sklearn
          RidgeCV, one alpha shared by all targets); the model is returned in the same convention,
          prediction = ((x - mean) / scale) @ coef.T + intercept, with c = 1 / alpha.
  knn     cosine kNN on standardised embeddings (services.probing.knn).
  mlp     one-hidden-layer MLP with early stopping (services.probing.mlp).

Target types (`target_type`): "classification" (0/1 labels, one-hot unless multi_label) and
"regression" (continuous targets [n, T], class_names naming the T targets; multi_label must be false).

Outputs: test_logits are decision scores (linear logits; log of the probabilities, clipped at 1e-15,
for knn/mlp; predicted values for regression); test_probabilities are class probabilities (None for
regression). Metrics: classification as core.score_test_split; regression mae, rmse, r2, pearson_r,
each the mean over targets. With bootstrap > 0, metrics_ci_low/high hold patient-level percentile
95% CIs (services.probing.metrics) for every metric that is defined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from services.probing import knn as knn_probe
from services.probing import mlp as mlp_probe
from services.probing.core import (ProbeResult, _as_matrix, _check_inputs, _check_trainable, check_standardiser,
                                   fit_linear_probe, score_test_split, single_threaded_blas)
from services.probing.metrics import bootstrap_ci, group_index, point_metrics

PROBES = ("linear", "knn", "mlp")
TARGET_TYPES = ("classification", "regression")
DEFAULT_RIDGE_ALPHAS: tuple[float, ...] = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
_EPS = 1e-15
_EMPTY = np.zeros((0,))


@dataclass(frozen=True)
class ProbeSettings:
    """Hyper-parameter options of every probe kind (each kind reads its own; defaults as documented)."""

    cs: tuple[float, ...] | None = None  # linear classification: C grid (None = core.DEFAULT_CS)
    cv_folds: int = 5  # linear classification: inner CV folds
    ks: tuple[int, ...] | None = None  # knn: k grid (None = knn.DEFAULT_KS; one value = fixed k)
    distance_weighted: bool = False  # knn: weight votes by inverse cosine distance
    alphas: tuple[float, ...] | None = None  # mlp L2 grid / ridge alpha grid (None = per-probe default)
    hidden_units: int = mlp_probe.DEFAULT_HIDDEN  # mlp: hidden layer width
    max_epochs: int = mlp_probe.DEFAULT_MAX_EPOCHS  # mlp: epoch cap
    patience: int = mlp_probe.DEFAULT_PATIENCE  # mlp: epochs without validation improvement before stopping
    val_fraction: float = mlp_probe.DEFAULT_VAL_FRACTION  # mlp: share of the training split for validation

    def check(self) -> "ProbeSettings":
        """Self, or ValueError naming the first bad option."""
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.hidden_units < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("hidden_units, max_epochs and patience must be at least 1")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.ks is not None and any(int(k) < 1 for k in self.ks):
            raise ValueError(f"every k must be at least 1, got {list(self.ks)}")
        if self.alphas is not None and any(not math.isfinite(a) or a < 0 for a in self.alphas):
            raise ValueError(f"every alpha must be finite and >= 0, got {list(self.alphas)}")
        return self


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

def _check_regression(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      class_names: Sequence[str], multi_label: bool) -> None:
    """ValueError unless shapes agree for a regression probe."""
    if multi_label:
        raise ValueError("multi_label must be false for a regression probe")
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}_x has {x.shape[0]} rows but {name}_y has {y.shape[0]}")
        if y.shape[1] != len(class_names) or not class_names:
            raise ValueError(f"{name}_y has {y.shape[1]} columns but there are {len(class_names)} target names")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has D={train_x.shape[1]} but test_x has D={test_x.shape[1]}")
    if train_x.shape[0] < 3 or test_x.shape[0] < 1:
        raise ValueError(f"need at least 3 training and 1 test rows, got {train_x.shape[0]} and {test_x.shape[0]}")


def _standardiser(train_x: np.ndarray, given: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The given (mean, scale) checked, or the training split's."""
    if given is not None:
        return check_standardiser(given, train_x.shape[1])
    scaler = StandardScaler().fit(train_x)
    return scaler.mean_.copy(), scaler.scale_.copy()


# ---------------------------------------------------------------------------------------------
# Probe kinds
# ---------------------------------------------------------------------------------------------

def _log_scores(probs: np.ndarray) -> np.ndarray:
    """Decision scores of a probability model: log-probabilities clipped at 1e-15 (finite)."""
    return np.log(np.clip(probs, _EPS, 1.0))


def _classification_result(probe: str, test_y: np.ndarray, probs: np.ndarray, class_names: list[str],
                           multi_label: bool, hyper: dict[str, float], notes: list[str]) -> ProbeResult:
    """ProbeResult of a non-linear classifier (no linear model)."""
    metrics, per_class, metric_notes = score_test_split(test_y, probs, class_names, multi_label)
    return ProbeResult(metrics=metrics, per_class_auroc=per_class, coef=_EMPTY, intercept=_EMPTY, mean=_EMPTY,
                       scale=_EMPTY, c=0.0, test_logits=_log_scores(probs), warnings=notes + metric_notes,
                       probe=probe, test_probabilities=probs, hyperparameters=hyper)


def _regression_result(probe: str, test_y: np.ndarray, preds: np.ndarray, hyper: dict[str, float],
                       notes: list[str], linear: tuple | None = None) -> ProbeResult:
    """ProbeResult of a regression probe; `linear` = (coef, intercept, mean, scale, c) for ridge."""
    coef, intercept, mean, scale, c = linear or (_EMPTY, _EMPTY, _EMPTY, _EMPTY, 0.0)
    return ProbeResult(metrics=point_metrics(test_y, preds, "regression", False), per_class_auroc={}, coef=coef,
                       intercept=intercept, mean=mean, scale=scale, c=c, test_logits=preds, warnings=notes,
                       probe=probe, target_type="regression", hyperparameters=hyper)


def fit_ridge(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              alphas: Sequence[float] | None, standardiser: tuple | None) -> ProbeResult:
    """Standardised ridge regression, alpha by efficient leave-one-out CV; returned as a linear model."""
    mean, scale = _standardiser(train_x, standardiser)
    grid = sorted(set(float(a) for a in (alphas or DEFAULT_RIDGE_ALPHAS)))
    if any(a <= 0 for a in grid):
        raise ValueError(f"every ridge alpha must be > 0, got {grid}")
    model = RidgeCV(alphas=grid).fit((train_x - mean) / scale, train_y)
    coef = np.atleast_2d(model.coef_).reshape(train_y.shape[1], -1)
    intercept = np.atleast_1d(model.intercept_).reshape(-1)
    preds = ((test_x - mean) / scale) @ coef.T + intercept
    alpha = float(model.alpha_)
    return _regression_result("linear", test_y, preds, {"alpha": alpha}, [],
                              (coef, intercept, mean, scale, 1.0 / alpha))


def _fit_knn(train_x, train_y, test_x, test_y, class_names, multi_label, regression: bool,
             settings: ProbeSettings, standardiser) -> ProbeResult:
    """The kNN probe as a ProbeResult."""
    given = check_standardiser(standardiser, train_x.shape[1]) if standardiser is not None else None
    fit = knn_probe.fit_knn(train_x, train_y, test_x, multi_label, regression, settings.ks,
                            settings.distance_weighted, given)
    hyper = {"k": float(fit.k), "distance_weighted": float(settings.distance_weighted)}
    if regression:
        return _regression_result("knn", test_y, fit.test_scores, hyper, fit.notes)
    return _classification_result("knn", test_y, fit.test_scores, class_names, multi_label, hyper, fit.notes)


def _fit_mlp(train_x, train_y, test_x, test_y, class_names, multi_label, regression: bool, seed: int,
             settings: ProbeSettings, standardiser) -> ProbeResult:
    """The MLP probe as a ProbeResult."""
    given = check_standardiser(standardiser, train_x.shape[1]) if standardiser is not None else None
    fit = mlp_probe.fit_mlp(train_x, train_y, test_x, multi_label, regression, seed, settings.alphas,
                            settings.hidden_units, settings.max_epochs, settings.patience, settings.val_fraction,
                            given)
    hyper = {"alpha": fit.alpha, "epochs": float(fit.epochs), "hidden_units": float(settings.hidden_units)}
    if regression:
        return _regression_result("mlp", test_y, fit.test_scores, hyper, fit.notes)
    return _classification_result("mlp", test_y, fit.test_scores, class_names, multi_label, hyper, fit.notes)


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

def _prepare(train_x, train_y, test_x, test_y, class_names, multi_label: bool,
             target_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Validated float64 inputs; ValueError naming the problem."""
    train_x, train_y = _as_matrix("train_x", train_x), _as_matrix("train_y", train_y)
    test_x, test_y = _as_matrix("test_x", test_x), _as_matrix("test_y", test_y)
    names = [str(name) for name in class_names]
    if target_type == "regression":
        _check_regression(train_x, train_y, test_x, test_y, names, multi_label)
    else:
        _check_inputs(train_x, train_y, test_x, test_y, names, multi_label)
        _check_trainable(train_y, names, multi_label)
    return train_x, train_y, test_x, test_y, names


def _dispatch(probe: str, regression: bool, data: tuple, multi_label: bool, seed: int, settings: ProbeSettings,
              standardiser, warm_start: bool) -> ProbeResult:
    """Fit the requested probe kind on validated inputs."""
    train_x, train_y, test_x, test_y, names = data
    if probe == "linear" and regression:
        return fit_ridge(train_x, train_y, test_x, test_y, settings.alphas, standardiser)
    if probe == "linear":
        return fit_linear_probe(train_x, train_y, test_x, test_y, names, multi_label, seed, settings.cs,
                                settings.cv_folds, standardiser=standardiser, warm_start=warm_start)
    if probe == "knn":
        return _fit_knn(train_x, train_y, test_x, test_y, names, multi_label, regression, settings, standardiser)
    return _fit_mlp(train_x, train_y, test_x, test_y, names, multi_label, regression, seed, settings, standardiser)


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              class_names: Sequence[str], multi_label: bool, seed: int, probe: str = "linear",
              target_type: str = "classification", settings: ProbeSettings | None = None, *,
              test_groups: Sequence | np.ndarray | None = None, bootstrap: int = 0, bootstrap_seed: int = 0,
              standardiser: tuple[np.ndarray, np.ndarray] | None = None, warm_start: bool = False) -> ProbeResult:
    """Fit one probe of any kind on the training split, score it on test, and bootstrap CIs if asked."""
    if probe not in PROBES:
        raise ValueError(f"probe {probe!r} is not supported; allowed: {', '.join(PROBES)}")
    if target_type not in TARGET_TYPES:
        raise ValueError(f"target_type {target_type!r} is not supported; allowed: {', '.join(TARGET_TYPES)}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    settings = (settings or ProbeSettings()).check()
    data = _prepare(train_x, train_y, test_x, test_y, class_names, multi_label, target_type)
    group_index(test_groups, data[3].shape[0])  # fail before fitting on a bad group list
    regression = target_type == "regression"
    with single_threaded_blas():
        result = _dispatch(probe, regression, data, multi_label, seed, settings, standardiser, warm_start)
        outputs = result.test_logits if regression else result.test_probabilities
        result.metrics_ci_low, result.metrics_ci_high = bootstrap_ci(
            data[3], outputs, target_type, multi_label, test_groups, bootstrap, bootstrap_seed, keys=result.metrics)
    result.bootstrap = int(bootstrap)
    return result
