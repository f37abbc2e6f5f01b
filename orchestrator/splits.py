"""Patient-level train/test splits, stratified and deterministic by seed."""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def patient_split(patients: list[str], labels: np.ndarray, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, test): every patient on one side only; patients stratified by their rarest class.

    Each patient is assigned to the stratum of the rarest class (over the whole dataset) among its
    records, and each stratum's patients are shuffled with `seed` and cut at `test_fraction`, so rare
    classes reach the test split whenever they have at least two patients.
    """
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(patients):
        by_patient[p].append(i)
    frequency = labels.sum(axis=0)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient in sorted(by_patient):
        positives = np.flatnonzero(labels[by_patient[patient]].max(axis=0))
        key = int(positives[np.argmin(frequency[positives])]) if len(positives) else -1
        strata[key].append(patient)
    rng = np.random.default_rng(seed)
    test_patients: set[str] = set()
    for key in sorted(strata):
        group = strata[key]
        order = rng.permutation(len(group))
        n_test = int(round(test_fraction * len(group)))
        if len(group) >= 2:
            n_test = min(max(n_test, 1), len(group) - 1)
        test_patients.update(group[j] for j in order[:n_test])
    train = [i for i, p in enumerate(patients) if p not in test_patients]
    test = [i for i, p in enumerate(patients) if p in test_patients]
    return train, test
