"""The seed paper's other probe families: random forest, RBF SVM, gradient-boosted trees, decision tree.

The seed's public code fits these on frozen, standardised embeddings with grid-searched
hyper-parameters; here each is a scikit-learn estimator on the same protocol as the other probes:

  * embeddings are standardised with the training split's mean and scale (or given ones);
  * one small grid per family (FAMILIES[kind].grid), chosen on the training split only: for the
    random forest by its out-of-bag macro AUROC (each record scored by the trees that did not see
    it; regression: OOB mean squared error), which needs no refits; for the others by inner
    cross-validation: stratified on each record's rarest positive label (random folds for
    regression), folds fixed by the seed, the key the mean inner macro AUROC (ties: lower
    log-loss, then the earlier grid point); regression: lower mean squared error of standardised
    targets. A class with fewer than 2 training records (a label side, multi-label) skips CV and
    the grid's first point is used, noted in the warnings; a grid of one point needs no CV;
  * every random choice comes from random_state = the seed (mod 2**32), so equal inputs give
    identical models; OpenMP (gradient boosting) and BLAS run single-threaded;
  * multi-class targets train one estimator on the class index; multi-label targets one binary
    estimator per label; regression one estimator per target column.

Families (classifier / regressor):
  random_forest      RandomForest, 100 trees of sqrt(D) features per split (scikit-learn's classifier default;
                     the regressor's default, all D, costs ~8x more), max_depth from {None, 8} by OOB
  svm                SVC(kernel="rbf", gamma "scale", C from {1, 10}) with Platt-scaled probabilities:
                     CalibratedClassifierCV(method="sigmoid", cv=5, ensemble=False), the replacement
                     scikit-learn 1.9 names for the deprecated SVC(probability=True) (one-vs-rest sigmoids
                     on 5-fold decision values, normalised; the SVC itself refitted on every record);
                     regression: SVR. Platt scaling needs data: with fewer than PLATT_MIN training
                     records in a class a 5-fold sigmoid fit can rank test records upside down (libsvm's
                     gave AUROC 0.07 on 3 records per class), so there the probabilities are the softmax
                     (binary: sigmoid) of the SVC's one-vs-rest decision values, noted
  gradient_boosting  HistGradientBoosting (scikit-learn's, in place of the seed's XGBoost; no new
                     dependency), 50 iterations of trees with at most 4 leaves, 16 bins, min_samples_leaf 5,
                     no early stopping, learning_rate 0.1: one setting, no grid (100 iterations of 31
                     leaves cost ~20x more on the demo's 210 x 256 training splits, and a grid of two by
                     3-fold CV 7x more: boosted trees were then half the demo's probe time)
  decision_tree      DecisionTree, max_depth from {3, 6, None}
Grids are deliberately small: a CV-chosen point costs (folds + 1) fits of every probe of the scarcity grid.
"""
from __future__ import annotations

import warnings as pywarnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.special import expit, softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from services.probing.inputs import sk_seed, standardiser_for
from services.probing.metrics import evaluable_columns, log_loss, per_class_auroc_weighted
from services.probing.sampling import stratum_keys

Params = dict[str, Any]


PLATT_MIN = 10  # training records per class below which SVM probabilities come from its decision values
_BOOSTING = {"max_iter": 50, "max_leaf_nodes": 4, "max_bins": 16, "min_samples_leaf": 5, "early_stopping": False}


class PlattSvc:
    """An RBF SVC with Platt-scaled probabilities, or softmaxed decision values where classes are too small."""

    def __init__(self, params: Params, seed: int):
        self.params = dict(params)  # the seed is unused: nothing in an SVC fit is random
        self.svc = None
        self.platt = True

    def fit(self, x: np.ndarray, y: np.ndarray) -> "PlattSvc":
        """Fit the SVC (with Platt scaling when every class has PLATT_MIN training records)."""
        self.platt = int(np.bincount(np.unique(y, return_inverse=True)[1]).min()) >= PLATT_MIN
        # No randomness: the SVC's solver is deterministic and the calibration folds are unshuffled.
        svc = SVC(kernel="rbf", gamma="scale", decision_function_shape="ovr", **self.params)
        calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False)
        self.svc = (calibrated if self.platt else svc).fit(x, y)
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The classes the SVC saw, in its column order."""
        return self.svc.classes_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[n, classes] probabilities: Platt's, or the softmax / sigmoid of the decision values."""
        if self.platt:
            return self.svc.predict_proba(x)
        scores = self.svc.decision_function(x)  # only the bare SVC is here
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)


@dataclass(frozen=True)
class Family:
    """One probe family: how to build its classifier and regressor, and its hyper-parameter grid."""

    classifier: Callable[[Params, int], Any]  # (grid point, seed) -> unfitted estimator
    regressor: Callable[[Params, int], Any]
    grid: tuple[Params, ...]
    tree: bool  # shap.TreeExplainer explains it exactly
    oob: bool = False  # the grid point is chosen by out-of-bag scores (the estimator must set oob_score=True)


FAMILIES: dict[str, Family] = {
    "random_forest": Family(
        lambda p, s: RandomForestClassifier(n_estimators=100, oob_score=True, random_state=s, n_jobs=1, **p),
        lambda p, s: RandomForestRegressor(n_estimators=100, max_features="sqrt", oob_score=True, random_state=s,
                                           n_jobs=1, **p),
        ({"max_depth": None}, {"max_depth": 8}), tree=True, oob=True),
    "svm": Family(
        lambda p, s: PlattSvc(p, s),
        lambda p, s: SVR(kernel="rbf", gamma="scale", **p),
        ({"C": 1.0}, {"C": 10.0}), tree=False),
    "gradient_boosting": Family(
        lambda p, s: HistGradientBoostingClassifier(**_BOOSTING, random_state=s, **p),
        lambda p, s: HistGradientBoostingRegressor(**_BOOSTING, random_state=s, **p),
        ({"learning_rate": 0.1},), tree=True),
    "decision_tree": Family(
        lambda p, s: DecisionTreeClassifier(random_state=s, **p),
        lambda p, s: DecisionTreeRegressor(random_state=s, **p),
        ({"max_depth": 3}, {"max_depth": 6}, {"max_depth": None}), tree=True),
}
KINDS = tuple(FAMILIES)


@dataclass
class FamilyFit:
    """The chosen grid point, the fitted estimators, the standardisation and the test-split outputs."""

    kind: str
    params: Params
    estimators: list  # one (multi-class, or one regressor per target) or one per label (multi-label)
    mean: np.ndarray
    scale: np.ndarray
    test_scores: np.ndarray  # [n_test, C] probabilities (classification) or predictions (regression)
    notes: list[str] = field(default_factory=list)


def hyperparameters(params: Params) -> dict[str, float]:
    """The grid point as ProbeResult hyper-parameters (finite numbers only: max_depth None, unlimited, is 0)."""
    return {k: (0.0 if v is None else float(v)) for k, v in params.items()}


def _targets(y: np.ndarray, multi_label: bool, regression: bool) -> list[np.ndarray]:
    """What each estimator is fitted on: class index, one 0/1 column per label, or one target per column."""
    if regression or multi_label:
        return [y[:, k] if regression else y[:, k].astype(np.int64) for k in range(y.shape[1])]
    return [np.argmax(y, axis=1)]


def _fit(kind: str, params: Params, seed: int, x: np.ndarray, y: np.ndarray, multi_label: bool,
         regression: bool) -> list:
    """Fitted estimators of one grid point on standardised x."""
    family = FAMILIES[kind]
    build = family.regressor if regression else family.classifier
    fitted = []
    for target in _targets(y, multi_label, regression):
        estimator = build(dict(params), sk_seed(seed))
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore", UserWarning)  # e.g. SVC Platt CV on tiny classes
            estimator.fit(x, target)
        fitted.append(estimator)
    return fitted


def platt_note(estimators: list) -> list[str]:
    """The note an SVM fit owes its reader when it could not use Platt scaling."""
    if any(isinstance(e, PlattSvc) and not e.platt for e in estimators):
        return [f"a class has fewer than {PLATT_MIN} training records: SVM probabilities are the softmax of its "
                "one-vs-rest decision values, not Platt-scaled"]
    return []


def outputs(estimators: list, x: np.ndarray, n_columns: int, multi_label: bool, regression: bool) -> np.ndarray:
    """[n, C] class probabilities (columns placed by each estimator's classes_) or predictions."""
    if regression:
        return np.column_stack([e.predict(x) for e in estimators]).astype(np.float64)
    out = np.zeros((x.shape[0], n_columns))
    if multi_label:
        for k, estimator in enumerate(estimators):
            probs = estimator.predict_proba(x)
            classes = list(estimator.classes_)
            out[:, k] = probs[:, classes.index(1)] if 1 in classes else 0.0
        return out
    estimator = estimators[0]
    out[:, np.asarray(estimator.classes_, dtype=np.int64)] = estimator.predict_proba(x)
    return out


def _folds(y: np.ndarray, multi_label: bool, regression: bool, cv_folds: int, seed: int,
           notes: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner CV splits of the training split ([] = too small for CV), stratified for classes."""
    n = y.shape[0]
    if regression:
        folds = min(cv_folds, n // 2)
        if folds < 2:
            return []
        return list(KFold(folds, shuffle=True, random_state=sk_seed(seed)).split(np.zeros(n)))
    positives = y.sum(axis=0)
    counts = np.minimum(positives, n - positives) if multi_label else positives
    smallest = int(counts.min())
    if smallest < 2:
        notes.append(f"a class has {smallest} training sample(s) on one side: inner CV skipped, "
                     "the grid's first point used")
        return []
    if smallest < cv_folds:
        notes.append(f"inner CV folds reduced from {cv_folds} to {smallest} (smallest class has {smallest} "
                     "training samples)")
    splitter = StratifiedKFold(n_splits=min(cv_folds, smallest), shuffle=True, random_state=sk_seed(seed))
    with pywarnings.catch_warnings():
        pywarnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(n), stratum_keys(y)))


def _fold_key(kind: str, params: Params, seed: int, x: np.ndarray, y: np.ndarray, fit_rows: np.ndarray,
              val_rows: np.ndarray, multi_label: bool, regression: bool, y_scale: np.ndarray) -> tuple[float, float]:
    """(score, -loss) of one fold, higher is better: macro AUROC and log-loss, or -MSE of standardised targets."""
    y_fit, y_val = y[fit_rows], y[val_rows]
    keep = evaluable_columns(y_fit) if multi_label else np.ones(y.shape[1], dtype=bool)
    if not keep.any():
        return np.nan, np.nan
    y_fit, y_val = (y_fit[:, keep], y_val[:, keep]) if multi_label else (y_fit, y_val)
    estimators = _fit(kind, params, seed, x[fit_rows], y_fit, multi_label, regression)
    out = outputs(estimators, x[val_rows], y_fit.shape[1], multi_label, regression)
    if regression:
        mse = float(np.mean(((out - y_val) / y_scale) ** 2))
        return -mse, -mse
    aurocs = per_class_auroc_weighted(y_val, out, np.ones((1, y_val.shape[0])))[0]
    auroc = float(np.nanmean(aurocs)) if np.any(np.isfinite(aurocs)) else np.nan
    return auroc, -log_loss(y_val, out, multi_label)


def select_params(kind: str, x: np.ndarray, y: np.ndarray, multi_label: bool, regression: bool, seed: int,
                  cv_folds: int, notes: list[str]) -> Params:
    """The grid point with the best mean inner-CV key (ties: the earlier point)."""
    grid = FAMILIES[kind].grid
    if len(grid) == 1:
        return dict(grid[0])
    splits = _folds(y, multi_label, regression, cv_folds, seed, notes)
    if not splits:
        return dict(grid[0])
    y_scale = np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0) if regression else np.ones(y.shape[1])
    best, best_key = 0, None
    for i, params in enumerate(grid):
        scores = np.array([_fold_key(kind, params, seed, x, y, tr, va, multi_label, regression, y_scale)
                           for tr, va in splits])
        key = tuple(float(np.nanmean(scores[:, j])) if np.any(np.isfinite(scores[:, j])) else -np.inf
                    for j in range(2))
        if best_key is None or key > best_key:
            best, best_key = i, key
    return dict(grid[best])


def _oob_key(estimators: list, y: np.ndarray, multi_label: bool, regression: bool) -> tuple[float, float]:
    """(score, -loss) of a forest's out-of-bag outputs on the rows every estimator scored, higher is better."""
    if regression:
        out = np.column_stack([e.oob_prediction_ for e in estimators])
    elif multi_label:
        out = np.column_stack([e.oob_decision_function_[:, list(e.classes_).index(1)] if 1 in e.classes_
                               else np.zeros(len(y)) for e in estimators])
    else:
        out = np.zeros(y.shape)
        out[:, np.asarray(estimators[0].classes_, dtype=np.int64)] = estimators[0].oob_decision_function_
    rows = np.all(np.isfinite(out), axis=1)  # a record in every tree's bootstrap has no OOB score
    out, y = out[rows], y[rows]
    if regression:
        scale = np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        mse = float(np.mean(((out - y) / scale) ** 2)) if len(y) else np.inf
        return -mse, -mse
    aurocs = per_class_auroc_weighted(y, out, np.ones((1, y.shape[0])))[0] if len(y) else np.array([np.nan])
    auroc = float(np.nanmean(aurocs)) if np.any(np.isfinite(aurocs)) else -np.inf
    return auroc, -log_loss(y, np.clip(out, 0.0, 1.0), multi_label) if len(y) else -np.inf


def select_by_oob(kind: str, x: np.ndarray, y: np.ndarray, multi_label: bool, regression: bool,
                  seed: int) -> tuple[Params, list]:
    """The grid point whose forest has the best out-of-bag key (ties: the earlier point), and that forest."""
    best = None
    for params in FAMILIES[kind].grid:
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore", UserWarning)  # "some inputs do not have OOB scores"
            estimators = _fit(kind, params, seed, x, y, multi_label, regression)
        key = _oob_key(estimators, y, multi_label, regression)
        if best is None or key > best[0]:
            best = (key, dict(params), estimators)
    return best[1], best[2]


def fit_family(kind: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, multi_label: bool,
               regression: bool, seed: int, cv_folds: int = 5,
               standardiser: tuple[np.ndarray, np.ndarray] | None = None) -> FamilyFit:
    """Standardise, choose the grid point (inner CV; the forest: out-of-bag), fit on the training split, score test."""
    if kind not in FAMILIES:
        raise ValueError(f"probe family {kind!r} is not one of {', '.join(KINDS)}")
    mean, scale = standardiser_for(train_x, standardiser)
    xs = (np.asarray(train_x, dtype=np.float64) - mean) / scale
    xt = (np.asarray(test_x, dtype=np.float64) - mean) / scale
    y = np.asarray(train_y, dtype=np.float64)
    notes: list[str] = []
    # One OpenMP thread: gradient boosting would otherwise take every core inside a one-CPU task.
    with threadpool_limits(limits=1, user_api="openmp"):
        if FAMILIES[kind].oob:
            params, estimators = select_by_oob(kind, xs, y, multi_label, regression, seed)
        else:
            params = select_params(kind, xs, y, multi_label, regression, seed, cv_folds, notes)
            estimators = _fit(kind, params, seed, xs, y, multi_label, regression)
        scores = outputs(estimators, xt, y.shape[1], multi_label, regression)
    return FamilyFit(kind, params, estimators, mean, scale, scores, notes + platt_note(estimators))


def standardised(fit: FamilyFit, x: np.ndarray) -> np.ndarray:
    """x standardised as the fit's estimators see it."""
    return (np.asarray(x, dtype=np.float64) - fit.mean) / fit.scale
