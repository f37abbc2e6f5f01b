"""Site separability: how well a cross-validated probe tells the source dataset from the embedding."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.analysis.inputs import as_labels, as_matrix

DEFAULT_CV_FOLDS = 5


@dataclass
class SiteSeparability:
    """Cross-validated macro one-vs-rest AUROC of a probe predicting the source dataset."""

    auroc: float  # 0.5 = sites indistinguishable, 1 = fully separable (a generalisation risk)
    per_source: dict[str, float]  # one-vs-rest AUROC of each source
    n_folds: int  # folds actually used (at most the number of patients)


def _site_probe(seed: int):
    """Standardised multinomial logistic regression, as in the probing service."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=int(seed) % 2**32))


def _out_of_fold_proba(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """[N, S] out-of-fold source probabilities; a source absent from a training fold gets 0 there."""
    from sklearn.model_selection import StratifiedGroupKFold

    sources = np.unique(y)
    proba = np.zeros((len(y), len(sources)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=int(seed) % 2**32)
    for train, test in splitter.split(x, y, groups):
        seen = np.unique(y[train])
        if len(seen) == 1:  # few patients: a training fold may hold one source, which is all it can predict
            proba[test, np.searchsorted(sources, seen[0])] = 1.0
            continue
        model = _site_probe(seed).fit(x[train], y[train])
        columns = np.searchsorted(sources, model.classes_)
        proba[np.ix_(test, columns)] = model.predict_proba(x[test])
    return proba


def site_separability(x: np.ndarray, sources: Sequence, groups: Sequence | None = None, seed: int = 0,
                      cv: int = DEFAULT_CV_FOLDS) -> SiteSeparability:
    """How well a standardised logistic probe tells the source dataset from the embedding (patient-grouped CV)."""
    from sklearn.metrics import roc_auc_score

    x = as_matrix(x, "embeddings", min_rows=2)
    y = as_labels(sources, len(x), "sources").astype(str)
    g = np.arange(len(x)).astype(str) if groups is None or len(groups) == 0 else as_labels(groups, len(x), "groups")
    names = np.unique(y)
    if len(names) < 2:
        raise ValueError(f"sources: site separability needs at least 2 sources, got {len(names)}")
    if cv < 2:
        raise ValueError(f"cv: must be >= 2, got {cv}")
    folds = min(cv, len(set(g.tolist())))
    if folds < 2:
        raise ValueError("groups: all rows belong to one patient; cross-validation needs at least 2")
    with warnings.catch_warnings():
        # Tiny sources trigger "least populated class" and convergence warnings; the AUROC is still
        # computed on out-of-fold predictions only.
        warnings.simplefilter("ignore")
        proba = _out_of_fold_proba(x, y, g.astype(str), folds, seed)
    # One pooled out-of-fold score per row: defined even when a fold lacks a source.
    per_source = {str(s): float(roc_auc_score(y == s, proba[:, i])) for i, s in enumerate(names)}
    return SiteSeparability(auroc=float(np.mean(list(per_source.values()))), per_source=per_source, n_folds=folds)
