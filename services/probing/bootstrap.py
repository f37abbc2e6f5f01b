"""Patient-level bootstrap: resample weights over test groups, replicate metrics and percentile CIs.

The resampling unit is a test group (a patient); groups are drawn with replacement, G draws from G
groups, and every record of a drawn group enters with that group's draw count. Each resample is one
weight row for services.probing.metrics.weighted_metrics, the function the point estimate uses too.
The 95% CI is the 2.5th/97.5th percentile of the replicates that are defined (a class absent from a
replicate leaves that replicate out of that class's AUROC; macro metrics average the classes that
are defined in the replicate). One seed fixes all resamples, so two models scored with the same
seed and groups see identical resamples.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from services.probing.metrics import weighted_metrics

# Resamples per block: bounds the [B, n] weight matrices to ~block * n * 8 bytes.
BLOCK = 128
CI_LEVEL = 0.95


def group_index(groups: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """Group number of each record (0..G-1); one group per record when groups is None or empty."""
    if groups is None or len(groups) == 0:
        return np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"test groups has {groups.shape[0]} entries but the test split has {n} records")
    return np.unique(groups, return_inverse=True)[1].reshape(-1)


def resample_weights(group_of: np.ndarray, n_boot: int, seed: int, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Blocks of record weights [b, n]: each row draws G groups with replacement (numpy Generator(seed))."""
    rng = np.random.default_rng(int(seed) % (2 ** 32))
    n_groups = int(group_of.max()) + 1 if group_of.size else 0
    done = 0
    while done < n_boot:
        b = min(block, n_boot - done)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        flat = (np.arange(b)[:, None] * n_groups + draws).ravel()
        counts = np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups).astype(np.float64)
        yield counts[:, group_of]
        done += b


def bootstrap_replicates(fn: Callable[[np.ndarray], dict[str, np.ndarray]], group_of: np.ndarray, n_boot: int,
                         seed: int) -> dict[str, np.ndarray]:
    """fn evaluated on n_boot group resamples, concatenated per key."""
    parts: dict[str, list[np.ndarray]] = {}
    for weights in resample_weights(group_of, n_boot, seed):
        for key, values in fn(weights).items():
            parts.setdefault(key, []).append(values)
    return {key: np.concatenate(values) for key, values in parts.items()}


def percentile_ci(replicates: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float] | None:
    """(low, high) percentile interval of the defined replicates; None when none is defined."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(y: np.ndarray, outputs: np.ndarray, target_type: str, multi_label: bool,
                 groups: Sequence | np.ndarray | None, n_boot: int, seed: int,
                 keys: Sequence[str] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(ci_low, ci_high) per metric from a patient-level percentile bootstrap (empty when n_boot == 0)."""
    if n_boot <= 0:
        return {}, {}
    y, outputs = np.asarray(y, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
    group_of = group_index(groups, y.shape[0])
    reps = bootstrap_replicates(lambda w: weighted_metrics(y, outputs, target_type, multi_label, w), group_of,
                                n_boot, seed)
    return _cis(reps, keys)


def _cis(replicates: dict[str, np.ndarray], keys: Sequence[str] | None) -> tuple[dict[str, float], dict[str, float]]:
    """(ci_low, ci_high) per metric of the replicates (keys: only these; metrics never defined left out)."""
    low, high = {}, {}
    for key, values in replicates.items():
        if keys is not None and key not in keys:
            continue
        ci = percentile_ci(values)
        if ci is not None:
            low[key], high[key] = ci
    return low, high


def seed_mean_ci(y: np.ndarray, outputs: Sequence[np.ndarray], target_type: str, multi_label: bool,
                 groups: Sequence | np.ndarray | None, n_boot: int, seed: int,
                 keys: Sequence[str] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """95% CI of the mean over seeds of each metric: one patient bootstrap, the same resamples for every seed.

    For S fits scored on the same test split (one per seed), replicate b is
        m_b = mean_s metric(y, outputs_s; weights_b)   (seeds whose metric is undefined in b left out)
    and the interval is the 2.5th/97.5th percentile of the defined m_b. It is the uncertainty of the
    seed-averaged score due to which test patients were drawn, the fits held fixed.
    """
    if n_boot <= 0 or not outputs:
        return {}, {}
    y = np.asarray(y, dtype=np.float64)
    outputs = [np.asarray(o, dtype=np.float64) for o in outputs]
    group_of = group_index(groups, y.shape[0])

    def seed_mean(weights: np.ndarray) -> dict[str, np.ndarray]:
        per_seed = [weighted_metrics(y, o, target_type, multi_label, weights) for o in outputs]
        out = {}
        for key in per_seed[0]:
            stacked = np.stack([p[key] for p in per_seed])
            defined = np.isfinite(stacked)
            total = np.where(defined, stacked, 0.0).sum(axis=0)
            count = defined.sum(axis=0)
            out[key] = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
        return out

    return _cis(bootstrap_replicates(seed_mean, group_of, n_boot, seed), keys)
