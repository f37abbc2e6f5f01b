"""L2 logistic-regression fits on standardised features, in the documented logit convention.

Logit convention: logits = ((x - mean) / scale) @ coef.T + intercept, with coef always [C, D].
Multi-class probabilities are softmax(logits); multi-label probabilities are sigmoid(logits).
sklearn fits a two-class problem as one sigmoid model (coef_ [1, D]); it is stored as the two rows
[0, w] with intercepts [0, b], because softmax([0, z]) == sigmoid(z) == predict_proba[:, 1].
Multi-class targets get one multinomial model, multi-label targets one binary model per label.
"""
from __future__ import annotations

import warnings as pywarnings
from typing import NamedTuple

import numpy as np
from scipy.special import expit, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from services.probing.inputs import sk_seed

DEFAULT_C = 1.0
MAX_ITER = 2000

# sklearn-shaped (coef_, intercept_) of each fitted model: one multinomial/binary model, or one
# binary model per label (multi-label). Kept raw so a fit can warm-start the next one.
RawFit = list[tuple[np.ndarray, np.ndarray]]


class LinearFit(NamedTuple):
    """A fitted standardised linear model in the logit convention, and the solver's iteration count."""

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_iter: int
    raw: RawFit | None = None


def linear_logits(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray,
                  scale: np.ndarray) -> np.ndarray:
    """Logits of the documented linear model: ((x - mean) / scale) @ coef.T + intercept."""
    xs = (np.asarray(x, dtype=np.float64) - mean) / scale
    return xs @ np.asarray(coef, dtype=np.float64).T + intercept


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Class probabilities from logits: sigmoid per class (multi-label) or softmax over classes."""
    logits = np.asarray(logits, dtype=np.float64)
    return expit(logits) if multi_label else softmax(logits, axis=1)


def _fit_binary_or_multinomial(xs: np.ndarray, y_idx: np.ndarray, c: float, seed: int,
                               init: tuple[np.ndarray, np.ndarray] | None = None) -> LogisticRegression:
    """One L2 logistic regression (lbfgs); multinomial when there are more than two classes."""
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, random_state=sk_seed(seed),
                               warm_start=init is not None)
    if init is not None:
        # sklearn's warm start reads coef_/intercept_ from the estimator, so presetting them is the init.
        model.coef_, model.intercept_ = init[0].copy(), init[1].copy()
    return model.fit(xs, y_idx)


def _targets(y: np.ndarray, multi_label: bool) -> list[np.ndarray]:
    """The integer target of each model: one per label (multi-label) or the class index."""
    if multi_label:
        return [y[:, k].astype(np.int64) for k in range(y.shape[1])]
    return [np.argmax(y, axis=1)]


def fit_raw(xs: np.ndarray, y: np.ndarray, c: float, seed: int, multi_label: bool,
            init: RawFit | None = None) -> tuple[RawFit, int]:
    """Fit every model on standardised features: (raw coefficients, most lbfgs iterations used)."""
    targets = _targets(y, multi_label)
    if init is not None and len(init) != len(targets):
        init = None
    models = [_fit_binary_or_multinomial(xs, t, c, seed, None if init is None else init[i])
              for i, t in enumerate(targets)]
    raw = [(m.coef_.copy(), m.intercept_.copy()) for m in models]
    return raw, max(int(m.n_iter_.max()) for m in models)


def convention(raw: RawFit, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """(coef [C, D], intercept [C]) in the documented logit convention."""
    if multi_label:
        return np.stack([coef[0] for coef, _ in raw]), np.array([icpt[0] for _, icpt in raw])
    coef, intercept = raw[0]
    if coef.shape[0] == 1:
        # Binary sklearn model: class 0 gets the zero logit so softmax reproduces the sigmoid.
        return np.stack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
    return coef.copy(), intercept.copy()


def fit_standardised(x: np.ndarray, y: np.ndarray, c: float, seed: int, multi_label: bool,
                     prescaled: bool = False, init: RawFit | None = None) -> LinearFit:
    """Standardise on x (its mean and scale are part of the model), then fit; prescaled x is used as is."""
    if prescaled:
        xs, mean, scale = x, np.zeros(x.shape[1]), np.ones(x.shape[1])
    else:
        scaler = StandardScaler().fit(x)
        xs, mean, scale = scaler.transform(x), scaler.mean_.copy(), scaler.scale_.copy()
    raw, n_iter = fit_raw(xs, y, c, seed, multi_label, init)
    coef, intercept = convention(raw, multi_label)
    return LinearFit(coef, intercept, mean, scale, n_iter, raw)


def final_fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, multi_label: bool,
              notes: list[str], prescaled: bool = False, init: RawFit | None = None) -> LinearFit:
    """Fit on the whole training split at the chosen C, noting a solver that did not converge."""
    # Iteration count, not caught warnings: warning filters are process-global and the server is threaded.
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_standardised(x, y, c, seed, multi_label, prescaled, init)
    if fit.n_iter >= MAX_ITER:
        notes.append(f"lbfgs did not converge in {MAX_ITER} iterations at C={c:g}")
    return fit
