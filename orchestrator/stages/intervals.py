"""Intervals stage: a real 95% CI for each seed-averaged score (what the leaderboard shows).

Per summary cell (model x dataset x task x probe x setting) the seeds' fits share one test split, so
one patient bootstrap resamples that split and every seed is scored on each resample; the interval is
the percentile interval of the seed mean (services.probing.bootstrap.seed_mean_ci). The per-seed CIs
in probes[].metrics stay as they are: each is the interval of one fit.
"""
from __future__ import annotations

import numpy as np
import ray

from orchestrator.experiment import Experiment
from orchestrator.stages.probe import Probed
from services.probing.bootstrap import seed_mean_ci

# (model, dataset, task, probe, train fraction, k-shot): one summary row
SummaryKey = tuple[str, str, str, str, "float | None", "int | None"]


def seed_mean_intervals(exp: Experiment, probed: Probed) -> dict[SummaryKey, dict[str, list[float]]]:
    """Summary key -> {metric: [low, high]}; empty without bootstrap resamples or patient groups."""
    n_boot = exp.probe["bootstrap"]
    out: dict = {}
    if n_boot <= 0:
        return out
    for cell in probed.cells:
        if cell.groups is None:
            continue
        model, dataset, task = cell.key
        groups = ray.get(cell.groups) if isinstance(cell.groups, ray.ObjectRef) else cell.groups
        y = ray.get(cell.y) if isinstance(cell.y, ray.ObjectRef) else cell.y
        test = np.asarray(cell.test)
        y_test = np.asarray(y, np.float32)[test]
        test_groups = [str(groups[i]) for i in test]
        for probe in cell.probes:
            for fraction, k_shot in cell.settings:
                fits = [probed.fits.get((model, dataset, task, fraction, k_shot, seed, probe)) for seed in cell.seeds]
                outputs = [f.outputs for f in fits if f is not None and f.outputs is not None]
                if not outputs:
                    continue
                low, high = seed_mean_ci(y_test, outputs, cell.target_type, cell.multi_label, test_groups, n_boot,
                                         seed=exp.seeds[0])
                out[(model, dataset, task, probe, fraction, k_shot)] = {m: [low[m], high[m]] for m in low}
    return out
