"""Linear probes on frozen embeddings, label-scarce training subsets and run summaries (no gRPC).

Protocol (the seed paper's): features are standardised on the training split, then an L2 logistic
regression is fitted — multinomial for multi-class, one binary model per class for multi-label — with
the inverse regularisation strength C chosen by stratified inner cross-validation on the training
split only. The test split is touched once, to score the chosen model.

Logit convention: logits = ((x - mean) / scale) @ coef.T + intercept, with coef always [C, D].
Multi-class probabilities are softmax(logits); multi-label probabilities are sigmoid(logits).
sklearn fits a two-class problem as one sigmoid model (coef_ [1, D]); it is stored as the two rows
[0, w] with intercepts [0, b], because softmax([0, z]) == sigmoid(z) == predict_proba[:, 1].

Sweep options (keyword-only, off by default so a plain call keeps the protocol above exactly):
`standardiser=(mean, scale)` uses given standardisation statistics instead of fitting them on the
training subset (inner-CV folds then share them too), and `warm_start=True` walks the C grid from
strong to weak regularisation inside each fold, each fit starting from the previous C's solution,
and starts the final fit from the fold-average solution at the chosen C. The optimum is the same
convex problem's, so warm starts change results only within the solver tolerance.
"""
from __future__ import annotations

import math
import threading
import warnings as pywarnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from scipy.special import expit, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from services.probing.metrics import auroc_weighted

# Log grid of inverse regularisation strengths; strong regularisation first so ties favour it.
DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2)
DEFAULT_C = 1.0
MAX_ITER = 2000
_EPS = 1e-15


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


_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter: threadpool_limits | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold BLAS at one thread while any probe in this process is fitting."""
    # Probe matrices are small: BLAS threads cost more than they save (10x on 2 cores), and one
    # thread fixes the summation order so fits are bit-identical on any host. The limit is
    # process-wide, so it is reference-counted across concurrent fits (server worker threads).
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


# ---------------------------------------------------------------------------------------------
# Probabilities and logits
# ---------------------------------------------------------------------------------------------

def linear_logits(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray,
                  scale: np.ndarray) -> np.ndarray:
    """Logits of the documented linear model: ((x - mean) / scale) @ coef.T + intercept."""
    xs = (np.asarray(x, dtype=np.float64) - mean) / scale
    return xs @ np.asarray(coef, dtype=np.float64).T + intercept


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Class probabilities from logits: sigmoid per class (multi-label) or softmax over classes."""
    logits = np.asarray(logits, dtype=np.float64)
    return expit(logits) if multi_label else softmax(logits, axis=1)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

def _as_matrix(name: str, array: np.ndarray) -> np.ndarray:
    """A float64 2-D copy of array; ValueError naming the argument otherwise."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {list(out.shape)}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def _check_inputs(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  class_names: Sequence[str], multi_label: bool) -> None:
    """Raise ValueError unless shapes agree and labels are 0/1 (one-hot when multi-class)."""
    if train_x.shape[0] != train_y.shape[0]:
        raise ValueError(f"train_x has {train_x.shape[0]} rows but train_y has {train_y.shape[0]}")
    if test_x.shape[0] != test_y.shape[0]:
        raise ValueError(f"test_x has {test_x.shape[0]} rows but test_y has {test_y.shape[0]}")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has D={train_x.shape[1]} but test_x has D={test_x.shape[1]}")
    n_classes = len(class_names)
    for name, y in (("train_y", train_y), ("test_y", test_y)):
        if y.shape[1] != n_classes:
            raise ValueError(f"{name} has {y.shape[1]} columns but there are {n_classes} class_names")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{name} must contain only 0 and 1")
        if not multi_label and not np.all(y.sum(axis=1) == 1):
            raise ValueError(f"{name} must be one-hot for a multi-class probe (one 1 per row)")
    if not multi_label and n_classes < 2:
        raise ValueError("a multi-class probe needs at least 2 classes")
    if train_x.shape[0] < 2 or test_x.shape[0] < 1:
        raise ValueError(f"need at least 2 training and 1 test rows, got {train_x.shape[0]} and {test_x.shape[0]}")


def _check_trainable(train_y: np.ndarray, class_names: Sequence[str], multi_label: bool) -> None:
    """Raise ValueError naming a class the probe cannot learn (no positives, or no negatives)."""
    positives = train_y.sum(axis=0)
    for k, name in enumerate(class_names):
        if positives[k] == 0:
            raise ValueError(f"class {name!r} has no training samples; a probe cannot learn it "
                             "(drop the class or use a larger training subset)")
        if multi_label and positives[k] == train_y.shape[0]:
            raise ValueError(f"class {name!r} is positive in every training record; a probe cannot learn it")


def _sk_seed(seed: int) -> int:
    """Map any integer seed into the range sklearn and numpy accept."""
    return int(seed) % (2 ** 32)


def _check_cs(cs: Sequence[float] | None) -> list[float]:
    """The sorted candidate Cs (default grid when empty); ValueError on non-positive values."""
    values = sorted(float(c) for c in (cs or DEFAULT_CS))
    if any(not math.isfinite(c) or c <= 0 for c in values):
        raise ValueError(f"every C must be finite and > 0, got {list(cs or [])}")
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------

# sklearn-shaped (coef_, intercept_) of each fitted model: one multinomial/binary model, or one
# binary model per label (multi-label). Kept raw so a fit can warm-start the next one.
RawFit = list[tuple[np.ndarray, np.ndarray]]


def _fit_binary_or_multinomial(xs: np.ndarray, y_idx: np.ndarray, c: float, seed: int,
                               init: tuple[np.ndarray, np.ndarray] | None = None) -> LogisticRegression:
    """One L2 logistic regression (lbfgs); multinomial when there are more than two classes."""
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, random_state=_sk_seed(seed),
                               warm_start=init is not None)
    if init is not None:
        # sklearn's warm start reads coef_/intercept_ from the estimator, so presetting them is the init.
        model.coef_, model.intercept_ = init[0].copy(), init[1].copy()
    return model.fit(xs, y_idx)


class LinearFit(NamedTuple):
    """A fitted standardised linear model in the logit convention, and the solver's iteration count."""

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_iter: int
    raw: RawFit | None = None


def _targets(y: np.ndarray, multi_label: bool) -> list[np.ndarray]:
    """The integer target of each model: one per label (multi-label) or the class index."""
    if multi_label:
        return [y[:, k].astype(np.int64) for k in range(y.shape[1])]
    return [np.argmax(y, axis=1)]


def _fit_raw(xs: np.ndarray, y: np.ndarray, c: float, seed: int, multi_label: bool,
             init: RawFit | None = None) -> tuple[RawFit, int]:
    """Fit every model on standardised features: (raw coefficients, most lbfgs iterations used)."""
    targets = _targets(y, multi_label)
    if init is not None and len(init) != len(targets):
        init = None
    models = [_fit_binary_or_multinomial(xs, t, c, seed, None if init is None else init[i])
              for i, t in enumerate(targets)]
    raw = [(m.coef_.copy(), m.intercept_.copy()) for m in models]
    return raw, max(int(m.n_iter_.max()) for m in models)


def _convention(raw: RawFit, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """(coef [C, D], intercept [C]) in the documented logit convention."""
    if multi_label:
        return np.stack([coef[0] for coef, _ in raw]), np.array([icpt[0] for _, icpt in raw])
    coef, intercept = raw[0]
    if coef.shape[0] == 1:
        # Binary sklearn model: class 0 gets the zero logit so softmax reproduces the sigmoid.
        return np.stack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
    return coef.copy(), intercept.copy()


def _fit_arrays(xs: np.ndarray, y: np.ndarray, c: float, seed: int,
                multi_label: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit on standardised features: (coef [C, D], intercept [C], most lbfgs iterations used)."""
    raw, n_iter = _fit_raw(xs, y, c, seed, multi_label)
    coef, intercept = _convention(raw, multi_label)
    return coef, intercept, n_iter


def _fit_standardised(x: np.ndarray, y: np.ndarray, c: float, seed: int, multi_label: bool,
                      prescaled: bool = False, init: RawFit | None = None) -> LinearFit:
    """Standardise on x (its mean and scale are part of the model), then fit; prescaled x is used as is."""
    if prescaled:
        xs, mean, scale = x, np.zeros(x.shape[1]), np.ones(x.shape[1])
    else:
        scaler = StandardScaler().fit(x)
        xs, mean, scale = scaler.transform(x), scaler.mean_.copy(), scaler.scale_.copy()
    raw, n_iter = _fit_raw(xs, y, c, seed, multi_label, init)
    coef, intercept = _convention(raw, multi_label)
    return LinearFit(coef, intercept, mean, scale, n_iter, raw)

# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------

def _evaluable(y: np.ndarray) -> np.ndarray:
    """Mask of label columns with both positives and negatives (AUROC is defined)."""
    positives = y.sum(axis=0)
    return (positives > 0) & (positives < y.shape[0])


def _per_class_auroc(y: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """AUROC of each evaluable column, NaN elsewhere."""
    # Rank-based (Mann-Whitney, ties 1/2): the same value as roc_auc_score without its per-call input
    # validation, which dominated small inner-CV fits (6 classes x 35 fold fits).
    ones = np.ones((1, y.shape[0]))
    return np.array([auroc_weighted(y[:, k], probs[:, k], ones)[0] if mask[k] else np.nan
                     for k in range(y.shape[1])])


def _log_loss(y: np.ndarray, probs: np.ndarray, multi_label: bool) -> float:
    """Mean negative log-likelihood (per label for multi-label)."""
    p = np.clip(probs, _EPS, 1 - _EPS)
    if multi_label:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[y.astype(bool)])))


# ---------------------------------------------------------------------------------------------
# Inner cross-validation
# ---------------------------------------------------------------------------------------------

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
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=_sk_seed(seed))
    with pywarnings.catch_warnings():
        # Multi-label strata can be smaller than the fold count; each label still has >= folds records.
        pywarnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(x, key))


def _fold_keep(y: np.ndarray, train: np.ndarray, multi_label: bool) -> np.ndarray:
    """Label columns a fold can fit: all (multi-class), those with both sides in the fold (multi-label)."""
    return _evaluable(y[train]) if multi_label else np.ones(y.shape[1], dtype=bool)


def _fold_eval(x: np.ndarray, y_fit: np.ndarray, val: np.ndarray, fit: LinearFit,
               multi_label: bool) -> tuple[float, float]:
    """(macro AUROC, log-loss) of a fold's fit on its validation rows."""
    probs = probabilities(linear_logits(x[val], fit.coef, fit.intercept, fit.mean, fit.scale), multi_label)
    y_val = y_fit[val]
    aurocs = _per_class_auroc(y_val, probs, _evaluable(y_val))
    auroc = float(np.nanmean(aurocs)) if np.any(np.isfinite(aurocs)) else np.nan
    return auroc, _log_loss(y_val, probs, multi_label)


def _fold_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, c: float, seed: int,
                multi_label: bool, prescaled: bool = False) -> tuple[float, float]:
    """(macro AUROC, log-loss) of one fold; labels that cannot be fitted or scored are left out."""
    keep = _fold_keep(y, train, multi_label)
    if not keep.any():
        return np.nan, np.nan
    y_fit = y[:, keep] if multi_label else y
    fit = _fit_standardised(x[train], y_fit[train], c, seed, multi_label, prescaled)
    return _fold_eval(x, y_fit, val, fit, multi_label)


def _cv_key(scores: np.ndarray) -> tuple[float, float]:
    """(mean macro AUROC, -mean log-loss) over folds [folds, 2]: higher is better."""
    auroc = float(np.nanmean(scores[:, 0])) if np.any(np.isfinite(scores[:, 0])) else -np.inf
    loss = float(np.nanmean(scores[:, 1])) if np.any(np.isfinite(scores[:, 1])) else np.inf
    return auroc, -loss


def _score_c(x: np.ndarray, y: np.ndarray, splits, c: float, seed: int, multi_label: bool,
             prescaled: bool = False) -> tuple[float, float]:
    """Mean (macro AUROC, -log-loss) over folds: the key C is chosen by (higher is better)."""
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", ConvergenceWarning)
        scores = np.array([_fold_score(x, y, tr, va, c, seed, multi_label, prescaled) for tr, va in splits])
    return _cv_key(scores)


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
    keys = [_score_c(x, y, splits, c, seed, multi_label, prescaled) for c in cs]
    return cs[_best(cs, keys)]


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
        init, n_iter = _fit_raw(xs_train, y_fit[train], c, seed, multi_label, init)
        coef, intercept = _convention(init, multi_label)
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


# ---------------------------------------------------------------------------------------------
# Test-split metrics
# ---------------------------------------------------------------------------------------------

def _skip_notes(y: np.ndarray, class_names: Sequence[str], mask: np.ndarray) -> list[str]:
    """One warning per class left out of the macro averages, with the reason."""
    notes = []
    for k in np.flatnonzero(~mask):
        side = "positives" if y[:, k].sum() == 0 else "negatives"
        notes.append(f"class {class_names[k]!r} left out of macro metrics: test split has no {side}")
    return notes


def _multiclass_label_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 of the argmax prediction over classes in the test split."""
    y_true, y_pred = np.argmax(y, axis=1), np.argmax(probs, axis=1)
    present = np.flatnonzero(y.sum(axis=0) > 0)
    recalls = [np.mean(y_pred[y_true == k] == k) for k in present]
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(np.mean(recalls)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }


def _multilabel_label_metrics(y: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Subset accuracy, plus macro F1 and balanced accuracy at 0.5 over evaluable labels."""
    pred = (probs >= 0.5).astype(np.float64)
    out = {"accuracy": float(np.mean(np.all(pred == y, axis=1)))}
    if not mask.any():
        return out
    yk, pk = y[:, mask], pred[:, mask]
    tpr = (pk * yk).sum(axis=0) / yk.sum(axis=0)
    tnr = ((1 - pk) * (1 - yk)).sum(axis=0) / (1 - yk).sum(axis=0)
    out["balanced_accuracy"] = float(np.mean((tpr + tnr) / 2))
    out["f1_macro"] = float(f1_score(yk, pk, average="macro", zero_division=0))
    return out


def score_test_split(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                 multi_label: bool) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """(macro metrics, per-class AUROC, warnings) on the test split; never NaN, omitted when undefined."""
    mask = _evaluable(y)
    notes = _skip_notes(y, class_names, mask)
    metrics = _multilabel_label_metrics(y, probs, mask) if multi_label else _multiclass_label_metrics(y, probs)
    aurocs = _per_class_auroc(y, probs, mask)
    per_class = {class_names[k]: float(aurocs[k]) for k in np.flatnonzero(mask)}
    if mask.any():
        metrics["auroc_macro"] = float(np.mean(aurocs[mask]))
        metrics["auprc_macro"] = float(np.mean(
            [average_precision_score(y[:, k], probs[:, k]) for k in np.flatnonzero(mask)]))
    else:
        notes.append("no class has both positives and negatives in the test split: auroc_macro and "
                     "auprc_macro omitted")
    return metrics, per_class, notes


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

def _final_fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, multi_label: bool,
               notes: list[str], prescaled: bool = False, init: RawFit | None = None) -> LinearFit:
    """Fit on the whole training split at the chosen C, noting a solver that did not converge."""
    # Iteration count, not caught warnings: warning filters are process-global and the server is threaded.
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", ConvergenceWarning)
        fit = _fit_standardised(x, y, c, seed, multi_label, prescaled, init)
    if fit.n_iter >= MAX_ITER:
        notes.append(f"lbfgs did not converge in {MAX_ITER} iterations at C={c:g}")
    return fit


def check_standardiser(standardiser: tuple[np.ndarray, np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], scale [D]) as float64; ValueError unless shapes match and every scale is finite and > 0."""
    mean, scale = (np.asarray(a, dtype=np.float64).reshape(-1) for a in standardiser)
    if mean.shape != (dim,) or scale.shape != (dim,):
        raise ValueError(f"standardiser mean/scale must have D={dim} entries, got {mean.size} and {scale.size}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("standardiser mean must be finite and scale finite and > 0")
    return mean, scale


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     class_names: Sequence[str], multi_label: bool, seed: int,
                     cs: Sequence[float] | None = None, cv_folds: int = 5, *,
                     standardiser: tuple[np.ndarray, np.ndarray] | None = None,
                     warm_start: bool = False) -> ProbeResult:
    """Fit a standardised logistic-regression probe (C by inner CV on train) and score it on test."""
    train_x, train_y = _as_matrix("train_x", train_x), _as_matrix("train_y", train_y)
    test_x, test_y = _as_matrix("test_x", test_x), _as_matrix("test_y", test_y)
    class_names = [str(name) for name in class_names]
    _check_inputs(train_x, train_y, test_x, test_y, class_names, multi_label)
    _check_trainable(train_y, class_names, multi_label)
    if cv_folds < 2:
        raise ValueError(f"cv_folds must be at least 2, got {cv_folds}")
    prescaled = standardiser is not None
    if prescaled:
        mean, scale = check_standardiser(standardiser, train_x.shape[1])
        train_x = (train_x - mean) / scale
    notes: list[str] = []
    with single_threaded_blas():
        if warm_start:
            c, init = select_c_warm(train_x, train_y, class_names, multi_label, seed, _check_cs(cs), cv_folds,
                                    notes, prescaled)
        else:
            c, init = select_c(train_x, train_y, class_names, multi_label, seed, _check_cs(cs), cv_folds, notes,
                               prescaled), None
        fit = _final_fit(train_x, train_y, c, seed, multi_label, notes, prescaled, init)
        if prescaled:
            fit = fit._replace(mean=mean, scale=scale)
        logits = linear_logits(test_x, fit.coef, fit.intercept, fit.mean, fit.scale)
    probs = probabilities(logits, multi_label)
    metrics, per_class, metric_notes = score_test_split(test_y, probs, class_names, multi_label)
    return ProbeResult(metrics=metrics, per_class_auroc=per_class, coef=fit.coef, intercept=fit.intercept,
                       mean=fit.mean, scale=fit.scale, c=float(c), test_logits=logits,
                       warnings=notes + metric_notes, test_probabilities=probs,
                       hyperparameters={"c": float(c)})


# ---------------------------------------------------------------------------------------------
# Label-scarce training subsets
# ---------------------------------------------------------------------------------------------
#
# Scheme. The sampling unit is a record, or a whole group (e.g. a patient) when `groups` is given;
# a group carries every label of its records. Each unit's stratum is its rarest positive label
# (rarity = positive count over all units, ties to the lower column; units with no positive label
# form one extra stratum), which for one-hot labels is simply the class. One seeded permutation of
# the units fixes every random choice; each stratum and each label queues its units in that order.
#
# Fractions: the units are put in one seed-fixed order and a fraction takes a prefix of it, so for a
# given seed every smaller fraction is a subset of every larger one. The order starts with a
# covering round (for each label, rarest first, the next unit carrying it unless one already
# chosen does) so every class is present even at tiny fractions, then continues with Tijdeman's
# chairman-assignment rule over strata: every prefix of that sequence holds each stratum within
# 1 - 1/(2(S-1)) < 1 of its proportional share (after the covering round has been absorbed).
#
# k-shot: rounds r = 1..k; in each round every label (rarest first) whose count among the chosen
# units is below r gets its next unit. Round r never depends on k, so k-shot subsets are nested in
# k; with one-hot labels and no groups every class gets exactly k records.

def stratum_keys(labels: np.ndarray) -> np.ndarray:
    """Per-row stratum: the rarest positive column (rarity over all rows); C for rows with none."""
    labels = np.asarray(labels) > 0
    n_classes = labels.shape[1]
    order = np.argsort(labels.sum(axis=0), kind="stable")  # rarest first, ties to the lower column
    rank = np.empty(n_classes, dtype=np.int64)
    rank[order] = np.arange(n_classes)
    best = np.where(labels, rank[None, :], n_classes).min(axis=1)
    return np.where(best < n_classes, order[np.minimum(best, n_classes - 1)], n_classes)


def _units(labels: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """(unit label matrix [U, C] bool, record indices of each unit; None when each record is a unit)."""
    labels = np.asarray(labels) > 0
    if groups is None:
        return labels, None
    groups = np.asarray(groups)
    if groups.shape[0] != labels.shape[0]:
        raise ValueError(f"groups has {groups.shape[0]} entries but labels has {labels.shape[0]} rows")
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    return np.stack([labels[m].any(axis=0) for m in members]), members


def _class_name(k: int, class_names: Sequence[str] | None) -> str:
    """How a class is named in messages: its name when known, always its column."""
    return f"{class_names[k]!r} (column {k})" if class_names is not None else f"column {k}"


def _label_queues(unit_labels: np.ndarray, perm: np.ndarray) -> list[list[int]]:
    """For each label, the units carrying it in permutation order."""
    return [perm[unit_labels[perm, k]].tolist() for k in range(unit_labels.shape[1])]


def _rarest_first(unit_labels: np.ndarray) -> list[int]:
    """Label columns from rarest to most common (ties to the lower column)."""
    return [int(k) for k in np.argsort(unit_labels.sum(axis=0), kind="stable")]


def _next_free(queue: list[int], taken: np.ndarray) -> int | None:
    """First unit of the queue not yet taken."""
    return next((u for u in queue if not taken[u]), None)


def _covering_round(unit_labels: np.ndarray, perm: np.ndarray) -> list[int]:
    """Units making every label present once, rarest label first."""
    taken = np.zeros(unit_labels.shape[0], dtype=bool)
    queues, chosen = _label_queues(unit_labels, perm), []
    for k in _rarest_first(unit_labels):
        if not unit_labels[taken, k].any():
            u = _next_free(queues[k], taken)
            taken[u] = True
            chosen.append(u)
    return chosen


def _earliest_deadline(m: int, sizes: list[int], counts: list[int], heads: list[int], lengths: list[int],
                       n_units: int, scale: int) -> int:
    """The eligible stratum with the earliest deadline (the first stratum if none is eligible)."""
    # Integer form of: eligible if m*w_s - c_s >= 1/(2(S-1)); deadline (c_s+1-σ)/w_s. Plain Python ints
    # and floats: with a handful of strata this is ~10x faster than numpy per step, same arithmetic.
    best, best_deadline = 0, math.inf
    for s, size in enumerate(sizes):
        if heads[s] < lengths[s] and scale * (m * size - counts[s] * n_units) >= n_units:
            deadline = ((counts[s] + 1) * scale - 1) / max(size, 1)
            if deadline < best_deadline:
                best, best_deadline = s, deadline
    return best


def _tijdeman_fill(keys: np.ndarray, perm: np.ndarray, start: list[int]) -> list[int]:
    """Extend `start` to all units, stratum by stratum, keeping every prefix proportional."""
    n_units, n_strata = len(keys), int(keys.max()) + 1
    sizes = np.bincount(keys, minlength=n_strata).tolist()
    taken = np.zeros(n_units, dtype=bool)
    taken[start] = True
    rest = perm[~taken[perm]]
    queues = [rest[keys[rest] == s].tolist() for s in range(n_strata)]
    heads, lengths = [0] * n_strata, [len(q) for q in queues]
    counts = np.bincount(keys[start], minlength=n_strata).tolist() if start else [0] * n_strata
    order, scale = list(start), 2 * max(n_strata - 1, 1)
    for m in range(len(start) + 1, n_units + 1):
        s = _earliest_deadline(m, sizes, counts, heads, lengths, n_units, scale)
        order.append(queues[s][heads[s]])
        heads[s] += 1
        counts[s] += 1
    return order


def _k_shot_units(unit_labels: np.ndarray, perm: np.ndarray, k_shot: int) -> list[int]:
    """Rounds 1..k: each label below r chosen units gets its next unit (nested in k)."""
    taken = np.zeros(unit_labels.shape[0], dtype=bool)
    queues, chosen = _label_queues(unit_labels, perm), []
    for r in range(1, k_shot + 1):
        for k in _rarest_first(unit_labels):
            if unit_labels[taken, k].sum() < r:
                u = _next_free(queues[k], taken)
                taken[u] = True
                chosen.append(u)
    return chosen


def _check_scarcity_args(unit_labels: np.ndarray, fraction: float | None, k_shot: int | None,
                         class_names: Sequence[str] | None, unit: str) -> None:
    """ValueError for bad arguments or a class that cannot be represented."""
    if fraction is not None and k_shot is not None:
        raise ValueError("give fraction or k_shot, not both")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if k_shot is not None and k_shot < 1:
        raise ValueError(f"k_shot must be at least 1, got {k_shot}")
    totals = unit_labels.sum(axis=0)
    for k, total in enumerate(totals):
        if total == 0:
            raise ValueError(f"class {_class_name(k, class_names)} has no training samples: "
                             "a stratified subset cannot contain it")
        if k_shot is not None and total < k_shot:
            raise ValueError(f"class {_class_name(k, class_names)} has {int(total)} training {unit} "
                             f"but k_shot={k_shot}")


def _records(units: Sequence[int], members: list[np.ndarray] | None) -> np.ndarray:
    """Sorted record indices of the chosen units."""
    if members is None:
        return np.sort(np.asarray(units, dtype=np.int64))
    return np.sort(np.concatenate([members[u] for u in units])).astype(np.int64)


def _fraction_order(unit_labels: np.ndarray, perm: np.ndarray) -> tuple[list[int], int]:
    """(every unit in the seed's fraction order, length of its covering round)."""
    cover = _covering_round(unit_labels, perm)
    return _tijdeman_fill(stratum_keys(unit_labels), perm, cover), len(cover)


def _fraction_prefix(order: list[int], n_cover: int, fraction: float) -> list[int]:
    """The units of one fraction: a prefix of the order."""
    # A subset smaller than the covering round would drop a class: the round is the floor.
    return order[:max(math.floor(fraction * len(order) + 0.5), n_cover, 1)]


def scarcity_subsets(labels: np.ndarray, settings: Sequence[tuple[float | None, int | None]], seed: int,
                     groups: np.ndarray | None = None, *,
                     class_names: Sequence[str] | None = None) -> list[np.ndarray]:
    """scarcity_subset for several (fraction, k_shot) settings of one seed; the fraction order is built once."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [n, C], got shape {list(labels.shape)}")
    unit_labels, members = _units(labels, groups)
    unit = "samples" if groups is None else "groups"
    for fraction, k_shot in settings:
        _check_scarcity_args(unit_labels, fraction, k_shot, class_names, unit)
    perm = np.random.default_rng(_sk_seed(seed)).permutation(unit_labels.shape[0])
    fraction_order = None  # (unit order, covering-round length): built once, on first use
    out = []
    for fraction, k_shot in settings:
        if fraction is None and k_shot is None:
            out.append(np.arange(labels.shape[0]))
            continue
        if k_shot is not None:
            units = _k_shot_units(unit_labels, perm, k_shot)
        else:
            fraction_order = fraction_order or _fraction_order(unit_labels, perm)
            units = _fraction_prefix(*fraction_order, fraction)
        out.append(_records(units, members))
    return out


def scarcity_subset(labels: np.ndarray, fraction: float | None, k_shot: int | None, seed: int,
                    groups: np.ndarray | None = None, *, class_names: Sequence[str] | None = None) -> np.ndarray:
    """Sorted record indices of a nested, stratified training subset (fraction of units or k per class)."""
    return scarcity_subsets(labels, [(fraction, k_shot)], seed, groups, class_names=class_names)[0]


# ---------------------------------------------------------------------------------------------
# Summaries over seeds
# ---------------------------------------------------------------------------------------------

def summarise(values: Sequence[float]) -> dict:
    """mean, std (ddof=1 when n > 1, else 0), min, max and n of a list of scores."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarise needs at least one value")
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "min": float(arr.min()), "max": float(arr.max()),
            "n": int(arr.size)}
