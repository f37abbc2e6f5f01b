"""Compare stage: paired model comparisons on the same test ECGs (patient bootstrap, macro DeLong)."""
from __future__ import annotations

import numpy as np

from orchestrator.dispatch import RecordProblem
from orchestrator.experiment import Experiment
from orchestrator.results import Comparison, json_float
from orchestrator.stages.probe import FitKey, FittedProbe
from orchestrator.stages.types import DatasetView
from services.probing.compare import delong_macro, paired_bootstrap


def compare(exp: Experiment, views: list[DatasetView],
            fits: dict[FitKey, FittedProbe]) -> tuple[list[Comparison], list[RecordProblem]]:
    """results.json `comparisons` for every model pair and seed at the full training fraction, and failures.

    One row per seed (each seed's fits, bootstrapped with that seed); readers aggregate by the stated
    rule of docs/results-schema.md: a pair is clearly different only when every seed's CI excludes 0 on
    the same side, and the most conservative row (largest p) is the one quoted.
    """
    if len(exp.models) < 2 or not exp.scarcity["train_fractions"]:
        return [], []
    full = max(exp.scarcity["train_fractions"])
    out, problems = [], []
    for view in views:
        for task in view.tasks:
            classes, y = view.labels[task]
            for kind, seed in ((kind, seed) for kind in exp.probe["kinds"] for seed in exp.seeds):
                got = {m.name: fits.get((m.name, view.name, task, full, None, seed, kind)) for m in exp.models}
                names = [m.name for m in exp.models if got[m.name] and got[m.name].probabilities is not None]
                for a_i, a in enumerate(names):
                    for b in names[a_i + 1:]:
                        # Paired on the test ECGs both models embedded; each probe's rows follow its own test split.
                        test_a, test_b = view.split_for(task, a)[1], view.split_for(task, b)[1]
                        test = np.intersect1d(test_a, test_b)
                        pa = got[a].probabilities[np.searchsorted(test_a, test)]
                        pb = got[b].probabilities[np.searchsorted(test_b, test)]
                        groups = [view.metas[view.usable[i]].patient_id for i in test]
                        entry = {"dataset": view.name, "task": task, "probe": kind, "train_fraction": full,
                                 "seed": seed, "model_a": a, "model_b": b, "metric": "auroc_macro"}
                        try:
                            boot = paired_bootstrap(y[test], pa, pb, groups, n_boot=max(exp.probe["bootstrap"], 200),
                                                    seed=seed, multi_label=view.dataset.multi_label[task])
                        except ValueError as err:
                            problems.append(RecordProblem(view.name, "*", "comparison", f"{a} vs {b} ({kind}, seed {seed}): {err}",
                                                          a))
                            continue
                        entry.update(diff=boot["diff"], ci_low=boot["ci_low"], ci_high=boot["ci_high"],
                                     p_value=boot["p_value"])
                        # The smallest Holm-adjusted per-class (one-vs-rest) DeLong p; single-label tasks only,
                        # as documented (per-class tests of a multi-label probe would need the label coupling).
                        entry["delong_p"] = None
                        if not view.dataset.multi_label[task]:
                            try:
                                entry["delong_p"] = delong_macro(y[test], pa, pb, classes)["min_p_holm"]
                            except ValueError:
                                pass
                        entry["n_common"] = len(test)
                        out.append(Comparison(**{k: json_float(v) for k, v in entry.items()}))
    return out, problems
