"""One entry point for every probe kind and target type, with test metrics and bootstrap CIs (no gRPC).

Probe kinds (`probe`):
  linear  classification: linear.fit_linear_probe (standardised L2 logistic regression, C by inner CV);
          regression: linear.fit_ridge (standardised ridge regression, alpha by efficient leave-one-out
          CV, one alpha shared by all targets); the model is returned in the same convention,
          prediction = ((x - mean) / scale) @ coef.T + intercept, with c = 1 / alpha.
  knn     cosine kNN on standardised embeddings (services.probing.knn).
  mlp     one-hidden-layer MLP with early stopping (services.probing.mlp).
  random_forest, svm, gradient_boosting, decision_tree
          the seed paper's families on standardised embeddings, a small grid chosen by inner CV
          (services.probing.families); svm is an RBF SVC with Platt-scaled probabilities.

Target types (`target_type`): "classification" (0/1 labels, one-hot unless multi_label) and
"regression" (continuous targets [n, T], class_names naming the T targets; multi_label must be false).

Outputs: test_logits are decision scores (linear logits; log of the probabilities, clipped at 1e-15,
for the other kinds; predicted values for regression); test_probabilities are class probabilities (None for
regression). Metrics: classification as metrics.score_test_split; regression mae, rmse, r2, pearson_r,
each the mean over targets. With bootstrap > 0, metrics_ci_low/high hold patient-level percentile
95% CIs (services.probing.bootstrap) for every metric that is defined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.probing import families
from services.probing import knn as knn_probe
from services.probing import mlp as mlp_probe
from services.probing.blas import single_threaded_blas
from services.probing.bootstrap import bootstrap_ci, group_index
from services.probing.inputs import check_standardiser, prepare
from services.probing.linear import fit_linear_probe, fit_ridge
from services.probing.result import ProbeResult, classification_result, regression_result

PROBES = ("linear", "knn", "mlp") + families.KINDS
TARGET_TYPES = ("classification", "regression")


@dataclass(frozen=True)
class ProbeSettings:
    """Hyper-parameter options of every probe kind (each kind reads its own; defaults as documented)."""

    cs: tuple[float, ...] | None = None  # linear classification: C grid (None = c_selection.DEFAULT_CS)
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
# Probe kinds
# ---------------------------------------------------------------------------------------------

def _fit_knn(train_x, train_y, test_x, test_y, class_names, multi_label, regression: bool,
             settings: ProbeSettings, standardiser) -> ProbeResult:
    """The kNN probe as a ProbeResult."""
    given = check_standardiser(standardiser, train_x.shape[1]) if standardiser is not None else None
    fit = knn_probe.fit_knn(train_x, train_y, test_x, multi_label, regression, settings.ks,
                            settings.distance_weighted, given)
    hyper = {"k": float(fit.k), "distance_weighted": float(settings.distance_weighted)}
    if regression:
        return regression_result("knn", test_y, fit.test_scores, hyper, fit.notes)
    return classification_result("knn", test_y, fit.test_scores, class_names, multi_label, hyper, fit.notes)


def _fit_mlp(train_x, train_y, test_x, test_y, class_names, multi_label, regression: bool, seed: int,
             settings: ProbeSettings, standardiser) -> ProbeResult:
    """The MLP probe as a ProbeResult."""
    given = check_standardiser(standardiser, train_x.shape[1]) if standardiser is not None else None
    fit = mlp_probe.fit_mlp(train_x, train_y, test_x, multi_label, regression, seed, settings.alphas,
                            settings.hidden_units, settings.max_epochs, settings.patience, settings.val_fraction,
                            given)
    hyper = {"alpha": fit.alpha, "epochs": float(fit.epochs), "hidden_units": float(settings.hidden_units)}
    if regression:
        return regression_result("mlp", test_y, fit.test_scores, hyper, fit.notes)
    return classification_result("mlp", test_y, fit.test_scores, class_names, multi_label, hyper, fit.notes)


def _fit_family(kind: str, train_x, train_y, test_x, test_y, class_names, multi_label, regression: bool, seed: int,
                settings: ProbeSettings, standardiser) -> ProbeResult:
    """A probe of the seed's families (random forest, SVM, gradient boosting, decision tree) as a ProbeResult."""
    given = check_standardiser(standardiser, train_x.shape[1]) if standardiser is not None else None
    fit = families.fit_family(kind, train_x, train_y, test_x, multi_label, regression, seed, settings.cv_folds, given)
    hyper = families.hyperparameters(fit.params)
    if regression:
        return regression_result(kind, test_y, fit.test_scores, hyper, fit.notes)
    return classification_result(kind, test_y, fit.test_scores, class_names, multi_label, hyper, fit.notes)


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

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
    if probe in families.FAMILIES:
        return _fit_family(probe, train_x, train_y, test_x, test_y, names, multi_label, regression, seed, settings,
                           standardiser)
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
    data = prepare(train_x, train_y, test_x, test_y, class_names, multi_label, target_type)
    group_index(test_groups, data[3].shape[0])  # fail before fitting on a bad group list
    with single_threaded_blas():
        result = _dispatch(probe, target_type == "regression", data, multi_label, seed, settings, standardiser,
                           warm_start)
    return with_bootstrap(result, data[3], multi_label, test_groups, bootstrap, bootstrap_seed)


def with_bootstrap(result: ProbeResult, test_y: np.ndarray, multi_label: bool,
                   test_groups: Sequence | np.ndarray | None, bootstrap: int, seed: int) -> ProbeResult:
    """The result with patient-level bootstrap CIs of its test metrics (none when bootstrap == 0), in place."""
    outputs = result.test_logits if result.target_type == "regression" else result.test_probabilities
    with single_threaded_blas():
        result.metrics_ci_low, result.metrics_ci_high = bootstrap_ci(
            np.asarray(test_y, dtype=np.float64), outputs, result.target_type, multi_label, test_groups, bootstrap,
            seed, keys=result.metrics)
    result.bootstrap = int(bootstrap)
    return result
