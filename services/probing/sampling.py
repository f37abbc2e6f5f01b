"""Who trains and who tests: patient-level train/test splits and the label-scarce training subsets.

Every split here is deterministic by seed. `patient_split` cuts a dataset into train and test with
every patient on one side; `scarcity_subset(s)` draw the nested, stratified training subsets of the
label-scarcity grid (fractions and k-shot) of a classification target; `balanced_subsets` draw the
seed paper's balanced alternative (the same count from every class); `regression_subset` draws the
nested random subsets of a continuous target (no classes to stratify).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from services.probing.inputs import sk_seed


# ---------------------------------------------------------------------------------------------
# Patient-level train/test split
# ---------------------------------------------------------------------------------------------

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
    perm = np.random.default_rng(sk_seed(seed)).permutation(unit_labels.shape[0])
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


# Balanced (the seed paper's `balanced` mode): every stratum (the class, for one-hot labels; the
# rarest positive label for multi-label rows, rows with none forming one more stratum) gives
# max(1, round(fraction x the smallest stratum's size)) records, the first ones of that stratum in
# one seeded permutation, so for a given seed each fraction's subset holds every smaller one's.

def balanced_subsets(labels: np.ndarray, fractions: Sequence[float], seed: int, *,
                     class_names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Sorted record indices per fraction: the same number of records from every stratum (class)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [n, C], got shape {list(labels.shape)}")
    for fraction in fractions:
        _check_scarcity_args(labels > 0, fraction, None, class_names, "samples")
    keys = stratum_keys(labels)
    perm = np.random.default_rng(sk_seed(seed)).permutation(labels.shape[0])
    queues = [perm[keys[perm] == s] for s in np.unique(keys)]
    smallest = min(len(q) for q in queues)
    out = []
    for fraction in fractions:
        take = max(1, math.floor(fraction * smallest + 0.5))
        out.append(np.sort(np.concatenate([q[:take] for q in queues])).astype(np.int64))
    return out


def regression_subset(n_train: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a nested random training subset: a seeded order of n_train, then a prefix."""
    # A floor of 5 records: below it a regression probe has next to nothing to fit.
    order = np.random.default_rng([seed, 4241]).permutation(n_train)
    return np.sort(order[:max(5, int(round(fraction * n_train)))])
