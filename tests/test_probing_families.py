"""The seed paper's probe families (random forest, RBF SVM, boosted trees, decision tree) and balanced sampling."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from orchestrator.experiment import ConfigError, parse_experiment
from services.probing.families import FAMILIES, KINDS, PLATT_MIN, fit_family
from services.probing.grid import GridCell, run_grid
from services.probing.probes import fit_probe
from services.probing.sampling import balanced_subsets

D = 12


def blobs(n: int, n_classes: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian class blobs (float32) and one-hot labels, classes cycling so any prefix holds them all."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, D)) * sep / np.sqrt(D)
    y = np.arange(n) % n_classes
    return (centres[y] + rng.normal(size=(n, D))).astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]


def split(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) by position."""
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def names(n: int) -> list[str]:
    """Class names c0..c{n-1}."""
    return [f"c{k}" for k in range(n)]


def standardised(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits standardised with the training split's statistics, in float64 as the probes compute."""
    scaler = StandardScaler().fit(train_x.astype(np.float64))
    return scaler.transform(train_x.astype(np.float64)), scaler.transform(test_x.astype(np.float64))


# --------------------------------------------------------------------------------------------------
# Definition oracles: each probe is sklearn's estimator on the standardised training subset
# --------------------------------------------------------------------------------------------------

def test_random_forest_probe_is_sklearns_forest_on_the_standardised_subset():
    x, y = blobs(240, 3, sep=3.0, seed=1)
    train_x, train_y, test_x, test_y = split(x, y, 160)
    result = fit_probe(train_x, train_y, test_x, test_y, names(3), False, seed=7, probe="random_forest")
    depth = result.hyperparameters["max_depth"]
    assert depth in (0.0, 8.0)  # the grid: unlimited (written 0) or 8
    xs, xt = standardised(train_x, test_x)
    forest = RandomForestClassifier(n_estimators=100, max_depth=None if depth == 0 else int(depth), random_state=7,
                                    n_jobs=1).fit(xs, train_y.argmax(axis=1))
    np.testing.assert_array_equal(result.test_probabilities, forest.predict_proba(xt))
    assert result.probe == "random_forest" and result.coef.size == 0


def test_random_forest_regression_is_sklearns_regressor():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, D)).astype(np.float32)
    target = (x[:, :1] * 2 + 0.1 * rng.normal(size=(150, 1))).astype(np.float32)
    result = fit_probe(*split(x, target, 100), ["age"], False, seed=3, probe="random_forest",
                       target_type="regression")
    depth = result.hyperparameters["max_depth"]
    xs, xt = standardised(x[:100], x[100:])
    forest = RandomForestRegressor(n_estimators=100, max_features="sqrt", max_depth=None if depth == 0 else int(depth),
                                   random_state=3, n_jobs=1).fit(xs, target[:100, 0].astype(np.float64))
    np.testing.assert_array_equal(result.test_logits[:, 0], forest.predict(xt))
    assert result.metrics["r2"] > 0.7


def test_svm_probe_is_a_platt_scaled_rbf_svc_when_classes_are_large_enough():
    x, y = blobs(200, 2, sep=2.0, seed=4)
    train_x, train_y, test_x, test_y = split(x, y, 120)
    result = fit_probe(train_x, train_y, test_x, test_y, names(2), False, seed=5, probe="svm")
    xs, xt = standardised(train_x, test_x)
    svc = CalibratedClassifierCV(SVC(kernel="rbf", gamma="scale", C=result.hyperparameters["C"]), method="sigmoid",
                                 cv=5, ensemble=False).fit(xs, train_y.argmax(axis=1))
    np.testing.assert_allclose(result.test_probabilities, svc.predict_proba(xt), rtol=0, atol=1e-12)
    assert not any("Platt" in w for w in result.warnings)


def test_svm_on_tiny_classes_uses_its_decision_values_and_ranks_the_right_way_round():
    # Platt scaling fitted on 3 records per class can invert the ranking; decision values cannot.
    x, y = blobs(21 + 300, 6, sep=4.0, seed=6)
    result = fit_probe(*split(x, y, 21), names(6), False, seed=0, probe="svm")
    assert any(f"fewer than {PLATT_MIN}" in w for w in result.warnings)
    assert result.metrics["auroc_macro"] > 0.8
    np.testing.assert_allclose(result.test_probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Known answers: every family learns separable blobs and not shuffled labels
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_family_separates_blobs_and_not_noise(kind):
    x, y = blobs(300, 3, sep=6.0, seed=8)
    result = fit_probe(*split(x, y, 200), names(3), False, seed=0, probe=kind)
    assert result.metrics["auroc_macro"] > 0.9, result.metrics
    shuffled = y[np.random.default_rng(9).permutation(len(y))]
    chance = fit_probe(*split(x, shuffled, 200), names(3), False, seed=0, probe=kind)
    assert 0.3 <= chance.metrics["auroc_macro"] <= 0.7
    assert set(result.hyperparameters) == set(FAMILIES[kind].grid[0])


@pytest.mark.parametrize("kind", KINDS)
def test_family_multilabel_gives_one_probability_per_label(kind):
    rng = np.random.default_rng(10)
    y = (rng.random((240, 3)) < 0.4).astype(np.float32)
    y[y.sum(axis=1) == 0, 0] = 1
    x = (y @ rng.normal(size=(3, D)) * 2 + rng.normal(size=(240, D))).astype(np.float32)
    result = fit_probe(*split(x, y, 160), ["a", "b", "c"], True, seed=0, probe=kind)
    assert result.test_probabilities.shape == (80, 3)
    assert np.all((result.test_probabilities >= 0) & (result.test_probabilities <= 1))
    assert result.metrics["auroc_macro"] > 0.75


@pytest.mark.parametrize("kind", KINDS)
def test_family_fits_are_deterministic_and_depend_on_the_seed_only_where_random(kind):
    x, y = blobs(150, 3, sep=3.0, seed=11)
    first, second = (fit_family(kind, x[:100], y[:100], x[100:], False, False, seed=4) for _ in range(2))
    assert first.params == second.params
    np.testing.assert_array_equal(first.test_scores, second.test_scores)


def test_unknown_family_is_refused_with_the_list():
    with pytest.raises(ValueError, match="random_forest, svm, gradient_boosting, decision_tree"):
        fit_family("xgboost", np.zeros((4, 2)), np.eye(2)[[0, 1, 0, 1]], np.zeros((1, 2)), False, False, 0)


# --------------------------------------------------------------------------------------------------
# Balanced sampling
# --------------------------------------------------------------------------------------------------

def test_balanced_subsets_take_the_same_count_from_every_class_and_are_nested():
    counts = [40, 25, 10]  # the smallest class has 10 records
    labels = np.eye(3)[np.repeat(np.arange(3), counts)]
    subsets = balanced_subsets(labels, [0.2, 0.5, 1.0], seed=3)
    for fraction, subset in zip([0.2, 0.5, 1.0], subsets):
        per_class = labels[subset].sum(axis=0)
        assert per_class.tolist() == [round(fraction * 10)] * 3
    assert set(subsets[0]) <= set(subsets[1]) <= set(subsets[2])
    other = balanced_subsets(labels, [0.5], seed=4)[0]
    assert not np.array_equal(other, subsets[1])  # another seed draws other records


def test_balanced_subset_keeps_one_record_per_class_at_tiny_fractions_and_names_a_missing_class():
    labels = np.eye(3)[np.repeat(np.arange(3), [30, 30, 4])]
    assert labels[balanced_subsets(labels, [0.01], seed=0)[0]].sum(axis=0).tolist() == [1, 1, 1]
    empty = np.eye(3)[np.repeat([0, 1], [5, 5])]
    with pytest.raises(ValueError, match="'af' \\(column 2\\) has no training samples"):
        balanced_subsets(empty, [0.5], seed=0, class_names=["a", "b", "af"])


def test_grid_with_balanced_sampling_trains_on_equal_class_counts():
    rng = np.random.default_rng(12)
    y = np.eye(4, dtype=np.float32)[rng.permutation(np.repeat(np.arange(4), [50, 40, 30, 12]))]
    x = (y @ rng.normal(size=(4, D)) + rng.normal(size=(len(y), D))).astype(np.float32)
    train = np.arange(len(y) - 30)
    cell = GridCell(key=("m",), x=x, y=y, train=train, test=np.arange(len(y) - 30, len(y)), class_names=names(4),
                    multi_label=False, settings=[(0.5, None), (1.0, None)], seeds=[0], probes=["decision_tree"],
                    sampling="balanced")
    smallest = int(y[train].sum(axis=0).min())
    outcomes = run_grid([cell], executor="serial")
    assert [o.n_train for o in outcomes] == [4 * round(0.5 * smallest), 4 * smallest]
    stratified = run_grid([GridCell(**{**cell.__dict__, "sampling": "stratified"})], executor="serial")
    assert stratified[1].n_train == len(train)


# --------------------------------------------------------------------------------------------------
# The experiment file
# --------------------------------------------------------------------------------------------------

BASE = {"datasets": [{"kind": "synthetic", "sites": ["eu"], "records_per_site": 20}], "models": ["handcrafted"]}


def test_experiment_accepts_the_seed_families_and_balanced_sampling():
    exp = parse_experiment({**BASE, "probe": {"kinds": ["random_forest", "svm"]},
                            "scarcity": {"sampling": "balanced"}})
    assert exp.probe["kinds"] == ["random_forest", "svm"] and exp.scarcity["sampling"] == "balanced"
    assert parse_experiment(BASE).scarcity["sampling"] == "stratified"


def test_experiment_refuses_unknown_sampling_and_kinds_with_the_choices():
    with pytest.raises(ConfigError, match="scarcity.sampling: 'equal' is not one of stratified, balanced"):
        parse_experiment({**BASE, "scarcity": {"sampling": "equal"}})
    with pytest.raises(ConfigError, match="choose from linear, knn, mlp, random_forest, svm, gradient_boosting, "
                                          "decision_tree"):
        parse_experiment({**BASE, "probe": {"kinds": ["xgboost"]}})


def test_forest_grid_point_is_the_one_with_the_best_out_of_bag_auroc():
    from services.probing.metrics import per_class_auroc_weighted

    x, y = blobs(200, 3, sep=2.0, seed=13)
    xs, _ = standardised(x[:150], x[150:])
    fit = fit_family("random_forest", x[:150], y[:150], x[150:], False, False, seed=2)
    keys = []
    for depth in (None, 8):  # the grid, each forest scored on the records its trees did not see
        forest = RandomForestClassifier(n_estimators=100, max_depth=depth, random_state=2, n_jobs=1,
                                        oob_score=True).fit(xs, y[:150].argmax(axis=1))
        keys.append(np.nanmean(per_class_auroc_weighted(y[:150], forest.oob_decision_function_, np.ones((1, 150)))[0]))
    expected = [None, 8][int(np.argmax(keys))] if keys[0] != keys[1] else None
    assert fit.params == {"max_depth": expected}
