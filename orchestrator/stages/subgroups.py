"""Subgroups stage: each probe's macro AUROC by sex, age band and source, with CIs and the gap to overall;
and each probe's reliability bins (its calibration, beside probes[].metrics.ece and .brier).

At the full training fraction, per model x dataset x task x probe kind, the seeds' test predictions are
scored inside every subgroup of the test split (services/probing/subgroups.py: one patient bootstrap
gives the subgroup's CI and the CI of its gap to the whole split); groups with fewer than
`subgroups.min_records` test ECGs are left out. Age bands are the analyse stage's (<40, 40-59, 60-74, 75+).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from orchestrator.experiment import Experiment
from orchestrator.results import CalibrationRow, SubgroupRow, json_float
from orchestrator.stages.analyse import age_band
from orchestrator.stages.probe import Probed
from orchestrator.stages.types import DatasetView
from services.probing.calibration import reliability_bins
from services.probing.subgroups import subgroup_scores

# attribute -> the group of one record's metadata (None: unknown, left out)
ATTRIBUTES: dict[str, Callable[[Any], str | None]] = {
    "sex": lambda m: {"M": "male", "F": "female"}.get(m.extra.get("sex")),
    "age_band": lambda m: None if m.extra.get("age") is None else age_band(m.extra.get("age")),
    "source": lambda m: str(m.source) if m.source else None,
}


def _members(view: DatasetView, test: np.ndarray, attribute: str) -> dict[str, np.ndarray]:
    """Group -> bool mask over the test positions (groups in sorted order; unknown left out)."""
    values = [ATTRIBUTES[attribute](view.metas[view.usable[i]]) for i in test]
    return {g: np.array([v == g for v in values]) for g in sorted({v for v in values if v is not None})}


def _pair(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [json_float(ci[0]), json_float(ci[1])]


def subgroups(exp: Experiment, views: list[DatasetView], probed: Probed) -> tuple[list[SubgroupRow],
                                                                                  list[CalibrationRow]]:
    """results.json `subgroups` and `calibration` at the full training fraction ([] when disabled)."""
    if not exp.scarcity["train_fractions"]:
        return [], []
    full = max(exp.scarcity["train_fractions"])
    groups_out, calibration = [], []
    for view in views:
        for model in exp.models:
            for task in view.tasks:
                _, y_all = view.labels[task]
                test = view.split_for(task, model.name)[1]
                multi_label = view.dataset.multi_label[task]
                for kind in exp.probe["kinds"]:
                    fits = [probed.fits.get((model.name, view.name, task, full, None, s, kind)) for s in exp.seeds]
                    fits = [f for f in fits if f is not None and f.probabilities is not None]
                    if not fits:
                        continue
                    cell = {"model": model.name, "dataset": view.name, "task": task, "probe": kind,
                            "train_fraction": full}
                    y = y_all[test]
                    outputs = [f.outputs for f in fits]
                    calibration.append(_calibration(cell, y, outputs, fits, multi_label))
                    if exp.subgroups["enabled"]:
                        groups_out += _subgroup_rows(exp, view, cell, test, y, outputs)
    return groups_out, calibration


def _calibration(cell: dict, y: np.ndarray, outputs: list[np.ndarray], fits: list, multi_label: bool) -> CalibrationRow:
    """Reliability bins of the seeds' pooled test predictions, and the seed means of ECE and Brier."""
    pooled_y, pooled_p = np.concatenate([y] * len(outputs)), np.concatenate(outputs)
    mean = {k: [f.metrics[k] for f in fits if f.metrics.get(k) is not None] for k in ("ece", "brier")}
    return CalibrationRow(**cell, n=int(len(pooled_y)),
                          ece=json_float(float(np.mean(mean["ece"]))) if mean["ece"] else None,
                          brier=json_float(float(np.mean(mean["brier"]))) if mean["brier"] else None,
                          bins=reliability_bins(pooled_y, pooled_p, multi_label))


def _subgroup_rows(exp: Experiment, view: DatasetView, cell: dict, test: np.ndarray, y: np.ndarray,
                   outputs: list[np.ndarray]) -> list[SubgroupRow]:
    """One row per attribute x group with enough test ECGs."""
    patients = [view.metas[view.usable[i]].patient_id for i in test]
    rows = []
    for attribute in exp.subgroups["attributes"]:
        members = _members(view, test, attribute)
        if len(members) < 2:
            continue  # one group is the whole split: no gap to show
        for s in subgroup_scores(y, outputs, patients, members, exp.probe["bootstrap"], exp.seeds[0],
                                 exp.subgroups["min_records"]):
            rows.append(SubgroupRow(**cell, attribute=attribute, group=s.group, n=s.n, n_patients=s.n_patients,
                                    auroc_macro=json_float(s.value), ci=_pair(s.ci), overall=json_float(s.overall),
                                    gap=json_float(s.gap), gap_ci=_pair(s.gap_ci)))
    return rows
