"""Probe stage: every model x dataset x task x scarcity setting x seed x probe kind, on one grid engine.

The fits run in-process in Ray tasks (services.probing.grid), the same engine bench/probe_sweep.py times.
Regression targets (e.g. age) come from record metadata and go over the same grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import ray
from tqdm import tqdm

from orchestrator.dispatch import RecordProblem
from orchestrator.experiment import Experiment
from orchestrator.results import ProbeResult, json_float
from orchestrator.stages.types import DatasetView
from services.probing.grid import FitOutcome, GridCell, run_grid


class FitKey(NamedTuple):
    """Which fit: a tuple, so plain (model, dataset, task, fraction, k_shot, seed, probe) tuples find it too."""

    model: str
    dataset: str
    task: str  # a task, or a regression target, or (transfer) the pair of sources
    train_fraction: float | None
    k_shot: int | None
    seed: int
    probe: str


def _wire(array: np.ndarray | None) -> np.ndarray | None:
    """float64 values at float32 precision: what the probing contract carries, so every consumer sees it."""
    return None if array is None else np.asarray(array, np.float32).astype(np.float64)


@dataclass
class FittedProbe:
    """One fitted probe as later stages use it: scores, test probabilities, and the linear model if any."""

    n_train: int
    n_test: int
    metrics: dict[str, Any]  # test metrics, plus <name>_ci = [low, high] where bootstrapped
    per_class_auroc: dict[str, float]
    c: float
    hyperparameters: dict[str, float]
    warnings: list[str]
    probabilities: np.ndarray | None  # [n_test, C] at float32 precision; None for regression
    linear: dict[str, np.ndarray] | None  # coef, intercept, mean, scale (float32 precision), linear probes only
    outputs: np.ndarray | None = None  # what the metrics score, full precision: probabilities, or predictions

    @classmethod
    def from_outcome(cls, outcome: FitOutcome) -> "FittedProbe":
        """From the grid engine's outcome of a successful fit."""
        result = outcome.result
        metrics = dict(result.metrics)
        for name, low in result.metrics_ci_low.items():
            metrics[f"{name}_ci"] = [low, result.metrics_ci_high.get(name)]
        linear = None
        if result.probe == "linear":
            linear = {k: _wire(getattr(result, k)) for k in ("coef", "intercept", "mean", "scale")}
        regression = result.target_type == "regression"
        return cls(outcome.n_train, outcome.n_test, metrics, dict(result.per_class_auroc),
                   float(result.c) if result.probe == "linear" else 0.0, dict(result.hyperparameters),
                   list(result.warnings), _wire(result.test_probabilities), linear,
                   result.test_logits if regression else result.test_probabilities)

    def probe_dict(self) -> dict[str, Any]:
        """The linear model as the analysis stage's SHAP call takes it."""
        return dict(self.linear or {}, c=self.c)


@dataclass
class Probed:
    """The probe stage's output: results.json rows, fitted probes by key, and what failed."""

    probes: list[ProbeResult]
    fits: dict[FitKey, FittedProbe]
    problems: list[RecordProblem] = field(default_factory=list)
    cells: list[GridCell] = field(default_factory=list)  # what was fitted (labels, splits, groups per cell)

    def linear(self, model: str, dataset: str, task: str, fraction: float, seed: int) -> FittedProbe | None:
        """The linear probe of one cell at a training fraction, if it was fitted."""
        return self.fits.get(FitKey(model, dataset, task, fraction, None, seed, "linear"))


def settings(exp: Experiment) -> list[tuple[float | None, int | None]]:
    """The scarcity settings: every training fraction, then every k-shot."""
    sc = exp.scarcity
    return [(f, None) for f in sc["train_fractions"]] + [(None, k) for k in sc["k_shots"]]


def _number(value: Any) -> float:
    """A numeric metadata value, or NaN when missing or not a number."""
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _common(exp: Experiment) -> dict[str, Any]:
    return {"seeds": list(exp.seeds), "probes": list(exp.probe["kinds"]), "cs": exp.probe["cs"] or None,
            "cv_folds": exp.probe["cv_folds"], "bootstrap": exp.probe["bootstrap"]}


def classification_cells(exp: Experiment, views: list[DatasetView]) -> list[GridCell]:
    """One cell per model x dataset x task on that task's labelled split."""
    cells = []
    for view in views:
        groups = ray.put(view.column(lambda m: m.patient_id))
        for model in exp.models:
            for task in view.tasks:
                classes, y = view.labels[task]
                train, test = view.split_for(task, model.name)
                cells.append(GridCell(key=(model.name, view.name, task), x=view.emb[model.name], y=y, train=train,
                                      test=test, class_names=classes, multi_label=view.dataset.multi_label[task],
                                      settings=settings(exp), groups=groups, sampling=exp.scarcity["sampling"],
                                      **_common(exp)))
    return cells


def regression_cells(exp: Experiment, views: list[DatasetView]) -> list[GridCell]:
    """One cell per regression target x dataset x model, on records whose target is known (at least 10)."""
    cells = []
    for target in exp.regression["targets"]:
        for view in views:
            values = np.array(view.column(lambda m: _number(m.extra.get(target))), dtype=float)
            known = ~np.isnan(values)
            if known.sum() < 10:
                continue
            y = np.nan_to_num(values)[:, None].astype(np.float32)
            groups = ray.put(view.column(lambda m: m.patient_id))
            for model in exp.models:
                train, test = view.split_for(view.tasks[0], model.name)
                cells.append(GridCell(key=(model.name, view.name, target), x=view.emb[model.name], y=y,
                                      train=train[known[train]], test=test[known[test]], class_names=[target],
                                      multi_label=False, settings=[(f, None) for f in exp.scarcity["train_fractions"]],
                                      target_type="regression", groups=groups, **_common(exp)))
    return cells


def run_cells(cells: list[GridCell], label: str, show_progress: bool) -> list[FitOutcome]:
    """Every fit of the cells on the engine, with a progress bar."""
    total = sum(len(c.settings) * len(c.seeds) * len(c.probes) for c in cells)
    with tqdm(total=total, desc=label, unit="fit", disable=not show_progress or not cells) as bar:
        return run_grid(cells, progress=bar.update)


def _setting_text(outcome: FitOutcome) -> str:
    return (f"fraction {outcome.train_fraction}" if outcome.train_fraction is not None
            else f"{outcome.k_shot}-shot")


def collect(outcomes: list[FitOutcome], label: str) -> tuple[dict[FitKey, FittedProbe], list[RecordProblem]]:
    """Fitted probes by FitKey, and one problem per subset that could not be drawn or fit that failed."""
    fits, problems, reported = {}, [], set()
    for o in outcomes:
        model, dataset, task = o.key
        key = FitKey(model, dataset, task, o.train_fraction, o.k_shot, o.seed, o.probe)
        if o.result is not None:
            fits[key] = FittedProbe.from_outcome(o)
        elif o.probe is None:
            # A subset that cannot be drawn fails every probe kind of that setting: say so once.
            if (o.key, o.train_fraction, o.k_shot, o.seed) not in reported:
                reported.add((o.key, o.train_fraction, o.k_shot, o.seed))
                problems.append(RecordProblem(dataset, "*", "probe",
                                              f"{task}, {_setting_text(o)}, seed {o.seed}: {o.error}", model))
        else:
            problems.append(RecordProblem(str(dataset), "*", label, f"{key}: {o.error}", model))
    return fits, problems


def probe_rows(fits: dict[FitKey, FittedProbe], kinds: list[str]) -> list[ProbeResult]:
    """results.json `probes`: one row per fit, in model, dataset, task, kind, setting, seed order."""
    order = {kind: k for k, kind in enumerate(kinds)}
    rows = []
    for key in sorted(fits, key=lambda k: (k[0], k[1], k[2], order[k[6]], k[3] or 0, k[4] or 0, k[5])):
        fit = fits[key]
        model, dataset, task, fraction, k_shot, seed, kind = key
        rows.append(ProbeResult(
            model=model, dataset=dataset, task=task, probe=kind, train_fraction=fraction, k_shot=k_shot, seed=seed,
            n_train=fit.n_train, n_test=fit.n_test, metrics={k: json_float(v) for k, v in sorted(fit.metrics.items())},
            per_class_auroc={k: json_float(v) for k, v in sorted(fit.per_class_auroc.items())}, c=fit.c,
            hyperparameters=fit.hyperparameters, warnings=fit.warnings))
    return rows


def probe(exp: Experiment, views: list[DatasetView], show_progress: bool) -> Probed:
    """Fit every classification and regression probe of the experiment."""
    cells = classification_cells(exp, views) + regression_cells(exp, views)
    fits, problems = collect(run_cells(cells, "probes", show_progress), "probes")
    return Probed(probe_rows(fits, list(exp.probe["kinds"])), fits, problems, cells)
