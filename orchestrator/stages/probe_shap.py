"""SHAP of the seed's tree probes (exact TreeSHAP), as the analyse stage explains the linear probe.

The grid engine keeps no fitted non-linear model, so the task refits the probe where Ray places it:
families.fit_family on the same float32 training rows, seed and fold count as the grid's fit at the
full training fraction and first seed, which is deterministic and so the same model. It then runs
shap.TreeExplainer (exact for trees: interventional-free path-dependent TreeSHAP on the tree's own
cover) on at most MAX_SAMPLES test ECGs, the seed paper's <= 50, in the standardised space the
trees were fitted in. Class scores are the explainer's raw outputs (probabilities for forests and
trees, log-odds for boosted trees); the summary is the same as the linear probe's (dimensions for
50% / 90% of the mean |SHAP| mass, Gini, top dimensions per class), so the two can be compared.
The SVM has no exact explainer; KernelSHAP over hundreds of dimensions would cost thousands of model
calls per ECG for an approximate answer, so it is skipped with a note.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import ray

from orchestrator.stages.analysis_tasks import TASK_OPTIONS, Threads, computing_with
from services.analysis.shap_stats import shap_concentration
from services.probing.families import FAMILIES, fit_family, standardised

MAX_SAMPLES = 50
SVM_NOTE = ("not explained: an RBF SVM has no exact SHAP explainer, and KernelSHAP over every embedding dimension "
            "would be slow and approximate")


def _outputs(values: Any) -> np.ndarray:
    """TreeExplainer values as [N, D, outputs] (a single-output model, e.g. binary boosting, gets one)."""
    arr = np.asarray(values, dtype=np.float64)
    return arr[..., None] if arr.ndim == 2 else arr


def tree_shap(kind: str, train_x: np.ndarray, train_y: np.ndarray, samples: np.ndarray, class_names: list[str],
              multi_label: bool, seed: int, cv_folds: int, top_k: int) -> dict:
    """TreeSHAP summary of one refitted tree probe on the sample ECGs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's import touches deprecated matplotlib setters
        import shap
    fit = fit_family(kind, train_x, train_y, samples[:1], multi_label, False, seed, cv_folds)
    xs = standardised(fit, samples)
    outs = [_outputs(shap.TreeExplainer(e).shap_values(xs, check_additivity=False)) for e in fit.estimators]
    if multi_label:  # one binary model per label: its last output is the positive side
        phi = np.concatenate([o[..., -1:] for o in outs], axis=2)
    else:
        phi = outs[0]
        if phi.shape[2] == 1:  # a two-class model with one log-odds output: class 0 mirrors class 1
            phi = np.concatenate([-phi, phi], axis=2)
    mean_abs = np.abs(phi).mean(axis=0).T  # [C, D]
    concentration = shap_concentration(mean_abs)
    top = {name: [int(d) for d in np.lexsort((np.arange(row.size), -row))[:top_k]]
           for name, row in zip(class_names, mean_abs)}
    return {"explainer": "tree", "n_samples": int(len(samples)),
            "dims_for_50pct": int(concentration.dims_for_50pct), "dims_for_90pct": int(concentration.dims_for_90pct),
            "gini": float(concentration.gini), "top_dims": top}


def tree_shap_task(kind: str, emb: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                   class_names: list[str], multi_label: bool, seed: int, cv_folds: int, top_k: int,
                   threads: Threads | None = None) -> dict:
    """tree_shap on rows of one embedding matrix, cut here; float32 inputs, as the grid engine fits."""
    rows = np.asarray(test)[:MAX_SAMPLES]
    with computing_with(threads):
        return tree_shap(kind, np.asarray(emb[np.asarray(train)], np.float32), np.asarray(y[np.asarray(train)],
                         np.float32), np.asarray(emb[rows], np.float32), class_names, multi_label, seed, cv_folds,
                         top_k)


def explained(kinds: list[str]) -> dict[str, bool]:
    """The seed families among kinds: True for the tree ones TreeSHAP explains, False for the SVM."""
    return {k: FAMILIES[k].tree for k in kinds if k in FAMILIES}


tree_shap_remote = ray.remote(**TASK_OPTIONS)(tree_shap_task)
