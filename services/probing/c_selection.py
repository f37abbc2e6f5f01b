"""Choosing a logistic probe's C by stratified inner cross-validation on the training split only.

C maximises the mean inner-CV macro AUROC (ties: lower log-loss, then the smaller C). Folds are
stratified on each record's rarest positive label and fixed by the seed; a class too small for the
folds reduces them, and one with fewer than 2 training samples on a side skips CV (C = 1).

Warm starts (`select_c_warm`, a sweep option, off by default): the C grid is walked from strong to
weak regularisation inside each fold, each fit starting from the previous C's solution, and the
fold-average solution at the chosen C is returned to start the final fit. The optimum is the same
convex problem's, so warm starts change results only within the solver tolerance.
"""
from __future__ import annotations

import math
import warnings as pywarnings
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from services.probing.inputs import sk_seed
from services.probing.logistic import (DEFAULT_C, LinearFit, RawFit, convention, fit_raw, linear_logits,
                                       probabilities)
from services.probing.metrics import evaluable_columns, log_loss, per_class_auroc_weighted
from services.probing.sampling import stratum_keys

# Log grid of inverse regularisation strengths; strong regularisation first so ties favour it.
DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2)


def check_cs(cs: Sequence[float] | None) -> list[float]:
    """The sorted candidate Cs (default grid when empty); ValueError on non-positive values."""
    values = sorted(float(c) for c in (cs or DEFAULT_CS))
    if any(not math.isfinite(c) or c <= 0 for c in values):
        raise ValueError(f"every C must be finite and > 0, got {list(cs or [])}")
    return list(dict.fromkeys(values))


def _cv_folds(train_y: np.ndarray, class_names: Sequence[str], multi_label: bool, cv_folds: int,
              notes: list[str]) -> int:
    """Folds the training split supports: at most the smallest class (or label side) count; 0 = skip CV."""
    positives = train_y.sum(axis=0)
    counts = np.minimum(positives, train_y.shape[0] - positives) if multi_label else positives
    smallest = int(counts.min())
    if smallest < 2:
        name = class_names[int(np.argmin(counts))]
        notes.append(f"class {name!r} has {smallest} training sample(s) on one side: inner CV skipped, "
                     f"C={DEFAULT_C} used")
        return 0
    if smallest < cv_folds:
        notes.append(f"inner CV folds reduced from {cv_folds} to {smallest} (smallest class has {smallest} "
                     "training samples)")
    return min(cv_folds, smallest)


def _fold_splits(x: np.ndarray, train_y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (on the rarest positive label per record) shuffled splits, fixed by seed."""
    key = stratum_keys(train_y)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=sk_seed(seed))
    with pywarnings.catch_warnings():
        # Multi-label strata can be smaller than the fold count; each label still has >= folds records.
        pywarnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(x, key))


def _fold_keep(y: np.ndarray, train: np.ndarray, multi_label: bool) -> np.ndarray:
    """Label columns a fold can fit: all (multi-class), those with both sides in the fold (multi-label)."""
    return evaluable_columns(y[train]) if multi_label else np.ones(y.shape[1], dtype=bool)


def _fold_eval(x: np.ndarray, y_fit: np.ndarray, val: np.ndarray, fit: LinearFit,
               multi_label: bool) -> tuple[float, float]:
    """(macro AUROC, log-loss) of a fold's fit on its validation rows."""
    probs = probabilities(linear_logits(x[val], fit.coef, fit.intercept, fit.mean, fit.scale), multi_label)
    y_val = y_fit[val]
    aurocs = per_class_auroc_weighted(y_val, probs, np.ones((1, y_val.shape[0])))[0]
    auroc = float(np.nanmean(aurocs)) if np.any(np.isfinite(aurocs)) else np.nan
    return auroc, log_loss(y_val, probs, multi_label)


Standardised = tuple[np.ndarray, np.ndarray, np.ndarray]  # a fold's (standardised train rows, mean, scale)


def _standardised_fold(x: np.ndarray, train: np.ndarray, prescaled: bool) -> Standardised:
    """A fold's training rows standardised on themselves (as fit_standardised does), with mean and scale."""
    if prescaled:
        return x[train], np.zeros(x.shape[1]), np.ones(x.shape[1])
    scaler = StandardScaler().fit(x[train])
    return scaler.transform(x[train]), scaler.mean_.copy(), scaler.scale_.copy()


def _fold_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, c: float, seed: int,
                multi_label: bool, prescaled: bool = False,
                standardised: Standardised | None = None) -> tuple[float, float]:
    """(macro AUROC, log-loss) of one fold; labels that cannot be fitted or scored are left out.

    standardised: the fold's _standardised_fold, computed once for every C (the same numbers
    fit_standardised would compute again for each C).
    """
    keep = _fold_keep(y, train, multi_label)
    if not keep.any():
        return np.nan, np.nan
    y_fit = y[:, keep] if multi_label else y
    xs, mean, scale = standardised if standardised is not None else _standardised_fold(x, train, prescaled)
    raw, n_iter = fit_raw(xs, y_fit[train], c, seed, multi_label)
    coef, intercept = convention(raw, multi_label)
    return _fold_eval(x, y_fit, val, LinearFit(coef, intercept, mean, scale, n_iter, raw), multi_label)


def _cv_key(scores: np.ndarray) -> tuple[float, float]:
    """(mean macro AUROC, -mean log-loss) over folds [folds, 2]: higher is better."""
    auroc = float(np.nanmean(scores[:, 0])) if np.any(np.isfinite(scores[:, 0])) else -np.inf
    loss = float(np.nanmean(scores[:, 1])) if np.any(np.isfinite(scores[:, 1])) else np.inf
    return auroc, -loss


def _best(cs: Sequence[float], keys: Sequence[tuple[float, float]]) -> int:
    """Index of the best key; ties go to the earlier (smaller) C."""
    best = 0
    for i in range(1, len(cs)):
        if keys[i] > keys[best]:
            best = i
    return best


def select_c(x: np.ndarray, y: np.ndarray, class_names: Sequence[str], multi_label: bool, seed: int,
             cs: Sequence[float], cv_folds: int, notes: list[str], prescaled: bool = False) -> float:
    """C maximising inner-CV macro AUROC (ties: lower log-loss, then the smaller C)."""
    if len(cs) == 1:
        return cs[0]
    folds = _cv_folds(y, class_names, multi_label, cv_folds, notes)
    if folds == 0:
        return DEFAULT_C
    splits = _fold_splits(x, y, folds, seed)
    scores = np.empty((len(cs), len(splits), 2))
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", ConvergenceWarning)
        for f, (train, val) in enumerate(splits):
            # Folds outer, Cs inner: each fold is standardised once for the whole grid (the same numbers a
            # per-C standardisation gives), and only one fold's standardised copy is held at a time.
            standardised = _standardised_fold(x, train, prescaled)
            for i, c in enumerate(cs):
                scores[i, f] = _fold_score(x, y, train, val, c, seed, multi_label, prescaled, standardised)
    return cs[_best(cs, [_cv_key(scores[i]) for i in range(len(cs))])]


def _warm_fold_path(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, cs: Sequence[float],
                    seed: int, multi_label: bool, prescaled: bool) -> tuple[np.ndarray, list[RawFit | None]]:
    """Scores [len(cs), 2] and raw fits of one fold along the C grid, each fit warm-started from the last."""
    keep = _fold_keep(y, train, multi_label)
    if not keep.any():
        return np.full((len(cs), 2), np.nan), [None] * len(cs)
    y_fit = y[:, keep] if multi_label else y
    xs_train, mean, scale = x[train], np.zeros(x.shape[1]), np.ones(x.shape[1])
    if not prescaled:
        # Standardise the fold once for the whole path (a cold fit would refit the same scaler per C).
        scaler = StandardScaler().fit(xs_train)
        xs_train, mean, scale = scaler.transform(xs_train), scaler.mean_.copy(), scaler.scale_.copy()
    scores, raws, init = [], [], None
    for c in cs:
        init, n_iter = fit_raw(xs_train, y_fit[train], c, seed, multi_label, init)
        coef, intercept = convention(init, multi_label)
        scores.append(_fold_eval(x, y_fit, val, LinearFit(coef, intercept, mean, scale, n_iter), multi_label))
        # Fold-average warm starts need every fold to fit the same labels.
        raws.append(init if keep.all() else None)
    return np.array(scores), raws


def _average_raw(fits: list[RawFit | None]) -> RawFit | None:
    """Element-wise mean of several raw fits with the same structure (None if any is missing)."""
    if not fits or any(f is None for f in fits):
        return None
    return [(np.mean([f[i][0] for f in fits], axis=0), np.mean([f[i][1] for f in fits], axis=0))
            for i in range(len(fits[0]))]


def select_c_warm(x: np.ndarray, y: np.ndarray, class_names: Sequence[str], multi_label: bool, seed: int,
                  cs: Sequence[float], cv_folds: int, notes: list[str],
                  prescaled: bool = False) -> tuple[float, RawFit | None]:
    """select_c along a warm-started C path per fold; also the fold-average fit at the chosen C."""
    if len(cs) == 1:
        return cs[0], None
    folds = _cv_folds(y, class_names, multi_label, cv_folds, notes)
    if folds == 0:
        return DEFAULT_C, None
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", ConvergenceWarning)
        paths = [_warm_fold_path(x, y, tr, va, cs, seed, multi_label, prescaled)
                 for tr, va in _fold_splits(x, y, folds, seed)]
    keys = [_cv_key(np.array([scores[i] for scores, _ in paths])) for i in range(len(cs))]
    best = _best(cs, keys)
    return cs[best], _average_raw([raws[best] for _, raws in paths])
