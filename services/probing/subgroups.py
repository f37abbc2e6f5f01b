"""A probe's macro AUROC inside patient subgroups (sex, age band, source), with its gap to the whole test split.

For S fits of one probe (one per seed) scored on the same test split, with records i, outputs p_s and a
subgroup G (a set of test records),
    value(G)  = mean_s AUROC_macro(y[G], p_s[G])        (classes with both outcomes in G only)
    overall   = mean_s AUROC_macro(y, p_s)
    gap(G)    = value(G) - overall                      (negative: the probe is worse for this group)
CIs come from one patient-level bootstrap of the whole test split (services.probing.bootstrap): replicate
b draws patients with replacement, weights every record by its patient's draw count w_b, and recomputes
value and gap under w_b (a subgroup's records keep their weights; the overall score uses every record);
the 95% CI is the percentile interval of the defined replicates. The gap is paired (the same resample
enters both terms), so its CI is narrower than the two separate CIs suggest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from services.probing.bootstrap import bootstrap_replicates, group_index, percentile_ci
from services.probing.metrics import per_class_auroc_weighted


@dataclass(frozen=True)
class SubgroupScore:
    """One subgroup's seed-mean macro AUROC, its CI, and the gap to the whole test split with its CI."""

    group: str
    n: int  # test records in the group
    n_patients: int
    value: float | None
    ci: tuple[float, float] | None
    overall: float | None
    gap: float | None
    gap_ci: tuple[float, float] | None


def macro_auroc_weighted(y: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro AUROC [B] over the classes with both outcomes in y (NaN where none is defined in a row)."""
    per_class = per_class_auroc_weighted(y, probs, weights)
    finite = np.isfinite(per_class)
    counts = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.where(finite, per_class, 0.0).sum(axis=1) / counts, np.nan)


def _seed_mean(values: list[np.ndarray]) -> np.ndarray:
    """Mean over seeds of [B] arrays, leaving out undefined ones (NaN where every seed is undefined)."""
    stacked = np.stack(values)
    defined = np.isfinite(stacked)
    count = defined.sum(axis=0)
    total = np.where(defined, stacked, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def subgroup_scores(y: np.ndarray, outputs: Sequence[np.ndarray], patients: Sequence | np.ndarray,
                    members: Mapping[str, np.ndarray], n_boot: int, seed: int,
                    min_records: int = 10) -> list[SubgroupScore]:
    """One SubgroupScore per group (members: group -> bool mask over the test records) with at least
    min_records records; CIs None when n_boot == 0."""
    y = np.asarray(y, dtype=np.float64)
    outputs = [np.asarray(o, dtype=np.float64) for o in outputs]
    ones = np.ones((1, y.shape[0]))
    overall = _seed_mean([macro_auroc_weighted(y, o, ones) for o in outputs])[0]
    masks = {g: np.asarray(m, dtype=bool) for g, m in members.items() if int(np.sum(m)) >= min_records}

    def scores(weights: np.ndarray) -> dict[str, np.ndarray]:
        whole = _seed_mean([macro_auroc_weighted(y, o, weights) for o in outputs])
        out = {}
        for group, mask in masks.items():
            value = _seed_mean([macro_auroc_weighted(y[mask], o[mask], weights[:, mask]) for o in outputs])
            out[f"value:{group}"], out[f"gap:{group}"] = value, value - whole
        return out

    point = scores(ones)
    reps = bootstrap_replicates(scores, group_index(patients, y.shape[0]), n_boot, seed) if n_boot > 0 and masks \
        else {}
    patients = np.asarray(patients)
    result = []
    for group, mask in masks.items():
        value = point[f"value:{group}"][0]
        result.append(SubgroupScore(
            group=str(group), n=int(mask.sum()), n_patients=len(set(patients[mask].tolist())),
            value=_finite(value), ci=percentile_ci(reps[f"value:{group}"]) if reps else None,
            overall=_finite(overall), gap=_finite(point[f"gap:{group}"][0]),
            gap_ci=percentile_ci(reps[f"gap:{group}"]) if reps else None))
    return result
