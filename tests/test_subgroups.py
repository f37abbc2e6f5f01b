"""Subgroup scores: a known gap, the definitions, and the CIs."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from services.probing.probes import fit_probe
from services.probing.subgroups import macro_auroc_weighted, subgroup_scores


def one_group_signal(seed: int, n: int = 800) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary labels; the embedding carries the label only for group A records (B records are pure noise)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    group = np.where(rng.uniform(size=n) < 0.5, "A", "B")
    x = rng.normal(size=(n, 8))
    x[group == "A", 0] += 3.0 * (2 * label[group == "A"] - 1)
    return x.astype(np.float32), np.eye(2, dtype=np.float32)[label], group


def test_a_probe_that_learnt_one_subgroups_signal_shows_the_gap():
    x, y, group = one_group_signal(0)
    train, test = slice(0, 500), slice(500, None)
    outputs = [fit_probe(x[train], y[train], x[test], y[test], ["neg", "pos"], False, seed).test_probabilities
               for seed in (0, 1)]
    members = {g: group[test] == g for g in ("A", "B")}
    patients = np.arange(300).astype(str)
    scores = {s.group: s for s in subgroup_scores(y[test], outputs, patients, members, n_boot=300, seed=0)}
    a, b = scores["A"], scores["B"]
    assert a.value > 0.95 and abs(b.value - 0.5) < 0.1
    assert a.gap > 0.15 and b.gap < -0.2
    assert a.gap_ci[0] > 0 and b.gap_ci[1] < 0  # the gap is real, not resampling noise
    assert a.ci[0] <= a.value <= a.ci[1] and b.ci[0] <= b.value <= b.ci[1]
    assert a.overall == b.overall and a.n + b.n == 300 and a.n_patients == a.n


def test_values_are_seed_means_of_the_plain_macro_auroc():
    rng = np.random.default_rng(1)
    y = np.eye(3)[rng.integers(0, 3, 120)]
    outputs = [rng.dirichlet(np.ones(3), 120) + y * s for s in (0.2, 0.5)]
    mask = rng.uniform(size=120) < 0.4
    got = subgroup_scores(y, outputs, np.arange(120), {"x": mask, "rest": ~mask}, n_boot=0, seed=0)
    by = {s.group: s for s in got}

    def macro(yy, pp):
        return np.mean([roc_auc_score(yy[:, k], pp[:, k]) for k in range(3)])

    assert by["x"].value == pytest.approx(np.mean([macro(y[mask], o[mask]) for o in outputs]), abs=1e-12)
    assert by["x"].overall == pytest.approx(np.mean([macro(y, o) for o in outputs]), abs=1e-12)
    assert by["x"].gap == pytest.approx(by["x"].value - by["x"].overall, abs=1e-12)
    assert by["x"].ci is None and by["x"].gap_ci is None


def test_small_groups_are_left_out_and_a_class_missing_from_a_group_is_skipped():
    y = np.eye(2)[[0, 1] * 10 + [0] * 12]
    probs = np.linspace(0, 1, 32)[:, None] * np.array([[-1, 1]]) + np.array([[1, 0]])
    members = {"big": np.arange(32) < 20, "tiny": np.arange(32) >= 28, "one-class": np.arange(32) >= 20}
    got = {s.group: s for s in subgroup_scores(y, [probs], np.arange(32), members, n_boot=20, seed=0)}
    assert set(got) == {"big", "one-class"}
    assert got["one-class"].value is None and got["one-class"].gap is None  # no positives: AUROC undefined
    assert np.isnan(macro_auroc_weighted(y[20:], probs[20:], np.ones((1, 12))))[0]
