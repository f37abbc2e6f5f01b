"""One-hidden-layer MLP probes (sklearn MLPClassifier / MLPRegressor) with early stopping.

Protocol: embeddings are standardised with the training split's statistics (or given ones) and cast
to float32 (sklearn's MLP keeps float32, ~1.8x faster per epoch than float64; the probe is trained by stochastic
Adam, far noisier than float32 rounding). Probabilities are the float64 softmax (sigmoid for multi-label)
of the network's float32 logits, so a row of class probabilities sums to 1 within float64 rounding. The training split is divided once, seeded, into a fit
part and a validation part (val_fraction of every stratum of stratum_keys, at least one record of a
stratum always staying in the fit part; a random split for regression). For each L2 strength alpha
in the grid a fresh MLP (ReLU hidden layer, Adam, lr 1e-3, minibatches of min(200, n)) is trained
one epoch at a time on the fit part. After each epoch the validation part is scored: macro AUROC
(the metric the benchmark reports; sklearn's own early stopping would use accuracy) and log-loss
for classes, MSE of standardised targets for regression. An epoch improves on the best so far if
its AUROC is higher by more than 1e-3 (regression: MSE lower by more than 1e-3; a validation AUROC's
sampling noise is ~1e-2, so smaller gains are noise that would only buy epochs); the weights of the
last improving epoch are kept, and training stops after `patience` epochs without improvement or at
max_epochs. alpha is chosen by (validation AUROC, -log-loss) at each alpha's kept epoch (ties: the
smaller alpha). The returned model is the chosen alpha's kept model: it is trained on the fit part
only, the validation part having chosen alpha and the stopping epoch.

Tiny training splits (fewer than two validation records or a validation part without both sides of
any label) skip the split: the MLP trains on everything with the grid's middle alpha for
min(max_epochs, 200) epochs, stopping when the training loss stalls (sklearn's own rule), noted in
the warnings.

Determinism: one numpy RandomState(seed) per alpha drives the initial weights and the per-epoch
shuffles, and BLAS runs single-threaded, so equal inputs give bit-identical models.
"""
from __future__ import annotations

import warnings as pywarnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import expit, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from services.probing.metrics import auroc_weighted, evaluable_columns, log_loss
from services.probing.sampling import stratum_keys

DEFAULT_MLP_ALPHAS: tuple[float, ...] = (1e-4, 1e-2, 1.0)
DEFAULT_HIDDEN = 256
DEFAULT_MAX_EPOCHS = 200
DEFAULT_PATIENCE = 10
DEFAULT_VAL_FRACTION = 0.15
LEARNING_RATE = 1e-3
BATCH = 200
_TOL = 1e-3


@dataclass
class MlpFit:
    """The chosen model and its test-split outputs."""

    alpha: float
    epochs: int
    mean: np.ndarray
    scale: np.ndarray
    test_scores: np.ndarray  # [n_test, C]: probabilities (classification) or predictions (regression)
    notes: list[str]


def holdout_split(train_y: np.ndarray, val_fraction: float, seed: int,
                  regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows), seeded; stratified on stratum_keys for classification."""
    rng = np.random.default_rng(int(seed) % (2 ** 32))
    n = train_y.shape[0]
    strata = np.zeros(n, dtype=np.int64) if regression else stratum_keys(train_y)
    val = []
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        # Each stratum gives val_fraction of itself, rounded down, and always keeps one record to fit on.
        take = min(int(np.floor(val_fraction * members.size)), members.size - 1)
        val.extend(members[:take].tolist())
    val_rows = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(n), val_rows), val_rows


def _model(regression: bool, hidden: int, alpha: float, seed: int, n_fit: int):
    """A fresh MLP whose randomness comes from its own RandomState(seed)."""
    cls = MLPRegressor if regression else MLPClassifier
    # A RandomState instance, not an int: sklearn re-seeds from an int on every partial_fit call,
    # which would replay the same minibatch order every epoch.
    return cls(hidden_layer_sizes=(hidden,), alpha=alpha, learning_rate_init=LEARNING_RATE,
               batch_size=min(BATCH, n_fit), shuffle=True,
               random_state=np.random.RandomState(int(seed) % (2 ** 32)))


def _logits(model, x: np.ndarray) -> np.ndarray:
    """The output layer's inputs, float32, computed operation for operation as sklearn's forward pass."""
    out = x
    for layer, (weights, bias) in enumerate(zip(model.coefs_, model.intercepts_)):
        out = out @ weights
        out += bias
        if layer < len(model.coefs_) - 1:
            np.maximum(out, 0, out=out)  # ReLU: sklearn's default, which _model keeps
    return out


def model_outputs(model, x: np.ndarray, regression: bool) -> np.ndarray:
    """[n, C] probabilities (classification, one column per class) or predictions."""
    if regression:
        return model.predict(x).reshape(x.shape[0], -1).astype(np.float64)
    # The output activation runs in float64 on the float32 logits: sklearn's float32 softmax rows sum
    # to 1 only within ~1e-7, and confident probabilities round to exactly 1.0 and tie.
    z = _logits(model, x).astype(np.float64)
    probs = softmax(z, axis=1) if model.out_activation_ == "softmax" else expit(z)
    # One logistic output (two classes) becomes [P(class 0), P(class 1)], as predict_proba returns it.
    return np.column_stack([1.0 - probs[:, 0], probs[:, 0]]) if probs.shape[1] == 1 else probs


def _val_loss(y: np.ndarray, out: np.ndarray, multi_label: bool, regression: bool) -> float:
    """Validation loss: log-loss (per label when multi-label) or MSE of standardised targets."""
    if regression:
        return float(np.mean((out - y) ** 2))
    return log_loss(y, out, multi_label)


def _val_auroc(y: np.ndarray, out: np.ndarray) -> float:
    """Macro AUROC over validation columns with both sides (-inf if none)."""
    ones = np.ones((1, y.shape[0]))
    aurocs = [auroc_weighted(y[:, k], out[:, k], ones)[0] for k in np.flatnonzero(evaluable_columns(y))]
    return float(np.mean(aurocs)) if aurocs else -np.inf


def _fit_target(y: np.ndarray, multi_label: bool, regression: bool) -> np.ndarray:
    """What sklearn is given: class index (multi-class), the 0/1 matrix (multi-label) or the targets."""
    if regression:
        return y[:, 0] if y.shape[1] == 1 else y
    return y.astype(np.int64) if multi_label else np.argmax(y, axis=1)


def _snapshot(model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Copies of the model's weights."""
    return [c.copy() for c in model.coefs_], [b.copy() for b in model.intercepts_]


def _epoch_key(y_val: np.ndarray, out: np.ndarray, multi_label: bool, regression: bool) -> tuple[float, float]:
    """(stopping score, validation loss): macro AUROC for classes, -MSE for regression (higher is better)."""
    loss = _val_loss(y_val, out, multi_label, regression)
    return (-loss if regression else _val_auroc(y_val, out)), loss


def train_early_stopped(x_fit, y_fit, x_val, y_val, alpha: float, seed: int, hidden: int, max_epochs: int,
                        patience: int, multi_label: bool, regression: bool):
    """(model at its best validation epoch, (val score, -val loss) there, that epoch)."""
    model = _model(regression, hidden, alpha, seed, x_fit.shape[0])
    target = _fit_target(y_fit, multi_label, regression)
    classes = None if regression else np.arange(y_fit.shape[1])
    top, kept, best_state, best_epoch, stale = -np.inf, (-np.inf, np.inf), None, 0, 0
    for epoch in range(1, max_epochs + 1):
        if regression:
            model.partial_fit(x_fit, target)
        else:
            model.partial_fit(x_fit, target, classes=classes)
        score, loss = _epoch_key(y_val, model_outputs(model, x_val, regression), multi_label, regression)
        if score > top + _TOL:
            top, kept, best_state, best_epoch, stale = score, (score, loss), _snapshot(model), epoch, 0
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:  # None only if every epoch scored NaN (a diverged fit): keep the last
        model.coefs_, model.intercepts_ = best_state
    return model, (kept[0], -kept[1]), best_epoch


def _train_without_holdout(x, y, alpha: float, seed: int, hidden: int, max_epochs: int, multi_label: bool,
                           regression: bool):
    """Fallback for tiny splits: train on everything, stopping when the training loss stalls."""
    model = _model(regression, hidden, alpha, seed, x.shape[0])
    model.set_params(max_iter=min(max_epochs, DEFAULT_MAX_EPOCHS), n_iter_no_change=DEFAULT_PATIENCE)
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, _fit_target(y, multi_label, regression))
    return model, int(model.n_iter_)


def _usable_holdout(y_val: np.ndarray, regression: bool) -> bool:
    """Whether a validation part can rank alphas: two records and, for classes, a label with both sides."""
    if y_val.shape[0] < 2:
        return False
    return regression or bool(evaluable_columns(y_val).any())


def check_alphas(alphas: Sequence[float] | None) -> list[float]:
    """The sorted candidate alphas (default grid when empty); ValueError unless finite and >= 0."""
    values = sorted(set(float(a) for a in (alphas or DEFAULT_MLP_ALPHAS)))
    if any(not np.isfinite(a) or a < 0 for a in values):
        raise ValueError(f"every alpha must be finite and >= 0, got {list(alphas or [])}")
    return values


def fit_mlp(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, multi_label: bool, regression: bool,
            seed: int, alphas: Sequence[float] | None = None, hidden: int = DEFAULT_HIDDEN,
            max_epochs: int = DEFAULT_MAX_EPOCHS, patience: int = DEFAULT_PATIENCE,
            val_fraction: float = DEFAULT_VAL_FRACTION,
            standardiser: tuple[np.ndarray, np.ndarray] | None = None) -> MlpFit:
    """Fit the MLP probe (alpha and stopping epoch on a seeded validation split) and score the test split."""
    notes: list[str] = []
    grid = check_alphas(alphas)
    if standardiser is None:
        scaler = StandardScaler().fit(train_x)
        mean, scale = scaler.mean_.copy(), scaler.scale_.copy()
    else:
        mean, scale = standardiser
    xs = ((np.asarray(train_x, dtype=np.float64) - mean) / scale).astype(np.float32)
    xt = ((np.asarray(test_x, dtype=np.float64) - mean) / scale).astype(np.float32)
    y = np.asarray(train_y, dtype=np.float64)
    y_mean, y_std = (y.mean(axis=0), np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)) if regression else (0.0, 1.0)
    y = (y - y_mean) / y_std  # regression targets standardised: Adam's step size then fits any unit
    fit_rows, val_rows = holdout_split(train_y, val_fraction, seed, regression)
    if _usable_holdout(y[val_rows], regression):
        trials = [(a, *train_early_stopped(xs[fit_rows], y[fit_rows], xs[val_rows], y[val_rows], a, seed, hidden,
                                            max_epochs, patience, multi_label, regression)) for a in grid]
        alpha, model, _, epochs = _best_trial(trials)
    else:
        alpha = grid[len(grid) // 2]
        notes.append(f"training split too small for a validation part: MLP trained on all {len(y)} records "
                     f"with alpha={alpha:g}, no early stopping on validation")
        model, epochs = _train_without_holdout(xs, y, alpha, seed, hidden, max_epochs, multi_label, regression)
    out = model_outputs(model, xt, regression)
    if regression:
        out = out * y_std + y_mean
    if epochs >= max_epochs:
        notes.append(f"MLP still improving after max_epochs={max_epochs}")
    return MlpFit(alpha, epochs, mean, scale, out, notes)


def _best_trial(trials: list) -> tuple:
    """The trial with the highest key; the first (smallest alpha) among equals."""
    best = trials[0]
    for trial in trials[1:]:
        if trial[2] > best[2]:
            best = trial
    return best
