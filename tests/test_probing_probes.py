"""kNN, MLP and regression probes, weighted metrics and training subsets (in process)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import (average_precision_score, f1_score, mean_absolute_error, mean_squared_error, r2_score,
                             roc_auc_score)
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_info, threadpool_limits

from services.probing.blas import single_threaded_blas
from services.probing.knn import fit_knn
from services.probing.mlp import model_outputs
from services.probing.metrics import point_metrics, score_test_split, weighted_metrics
from services.probing.probes import ProbeSettings, fit_probe
from services.probing.sampling import patient_split, regression_subset, scarcity_subset, scarcity_subsets

D = 16


def blobs(n: int, n_classes: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian class blobs: float32 embeddings [n, D] and one-hot float32 labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, D)) * sep / np.sqrt(D)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    return (centres[y] + rng.normal(size=(n, D))).astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]


def multi_hot(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """3 labels, each shifting its own direction; some records carry two."""
    rng = np.random.default_rng(seed)
    y = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    second = rng.random(n) < 0.35
    y[second, (np.arange(n)[second] + 1) % 3] = 1
    directions = rng.normal(size=(3, D)) * 3.0 / np.sqrt(D)
    return (y @ directions + rng.normal(size=(n, D))).astype(np.float32), y


def linear_target(n: int, seed: int, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(0, I) and a continuous target linear in x plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    return x, (x @ rng.normal(size=(D, 1)) + noise * rng.normal(size=(n, 1))).astype(np.float32)


def split(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) by position."""
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def names(n: int) -> list[str]:
    """Class names c0..c{n-1}."""
    return [f"c{k}" for k in range(n)]


FAST_MLP = ProbeSettings(alphas=(1e-2,), max_epochs=60)


# --------------------------------------------------------------------------------------------------
# Known answers: separable vs shuffled
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("probe", ["knn", "mlp"])
def test_nonlinear_probes_separate_blobs_and_not_noise(probe):
    x, y = blobs(450, 3, sep=6.0, seed=1)
    result = fit_probe(*split(x, y, 300), names(3), False, seed=0, probe=probe, settings=FAST_MLP)
    assert result.metrics["auroc_macro"] > 0.95 and result.metrics["balanced_accuracy"] > 0.85
    shuffled = y[np.random.default_rng(2).permutation(len(y))]
    chance = fit_probe(*split(x, shuffled, 300), names(3), False, seed=0, probe=probe, settings=FAST_MLP)
    assert 0.35 <= chance.metrics["auroc_macro"] <= 0.65


@pytest.mark.parametrize("probe", ["knn", "mlp"])
def test_nonlinear_probes_multilabel(probe):
    x, y = multi_hot(450, seed=3)
    result = fit_probe(*split(x, y, 300), ["a", "b", "c"], True, seed=0, probe=probe, settings=FAST_MLP)
    assert result.metrics["auroc_macro"] > 0.85
    assert set(result.per_class_auroc) == {"a", "b", "c"}
    probs = result.test_probabilities
    assert probs.shape == (150, 3) and np.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("probe", ["knn", "mlp"])
def test_nonlinear_results_carry_probabilities_not_a_linear_model(probe):
    x, y = blobs(240, 3, sep=3.0, seed=4)
    result = fit_probe(*split(x, y, 160), names(3), False, seed=0, probe=probe, settings=FAST_MLP)
    assert result.probe == probe and result.coef.size == 0 and result.c == 0.0
    # The MLP's softmax runs in float64 on its float32 logits, so its rows sum to 1 as kNN's vote fractions do.
    np.testing.assert_allclose(result.test_probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.test_logits, np.log(np.clip(result.test_probabilities, 1e-15, 1)))
    metrics, per_class, _ = score_test_split(y[160:], result.test_probabilities, names(3), False)
    assert metrics == result.metrics and per_class == result.per_class_auroc


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["multi-class", "binary", "multi-label"])
def test_mlp_probabilities_are_sklearns_forward_pass_with_a_float64_output_layer(kind):
    x, y = multi_hot(120, seed=19) if kind == "multi-label" else blobs(120, 3 if kind == "multi-class" else 2, 3.0, 19)
    target = y.astype(np.int64) if kind == "multi-label" else y.argmax(axis=1)
    model = MLPClassifier((8,), max_iter=30, random_state=0).fit(x, target)
    ours, theirs = model_outputs(model, x, regression=False), model.predict_proba(x)
    assert ours.dtype == np.float64 and ours.shape == theirs.shape == y.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)  # equal up to sklearn's float32 output layer
    if kind != "multi-label":
        np.testing.assert_allclose(ours.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_linear_result_carries_probabilities_and_c():
    x, y = blobs(240, 3, sep=3.0, seed=5)
    result = fit_probe(*split(x, y, 160), names(3), False, seed=0)
    assert result.hyperparameters == {"c": result.c}
    np.testing.assert_allclose(result.test_probabilities.sum(axis=1), 1.0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# kNN specifics
# --------------------------------------------------------------------------------------------------

def test_knn_votes_are_neighbour_fractions():
    # Directions on a circle: cosine neighbours of angle t are the closest angles.
    angles = np.array([0.0, 0.1, 0.2, 1.6, 1.7, 3.1])
    train_x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    train_y = np.eye(2)[[0, 0, 1, 1, 1, 0]]
    test_x = np.array([[np.cos(0.05), np.sin(0.05)]])
    identity = (np.zeros(2), np.ones(2))
    fit = fit_knn(train_x, train_y, test_x, False, False, ks=[3], standardiser=identity)
    # Nearest three by angle: 0.0 (class 0), 0.1 (class 0), 0.2 (class 1).
    np.testing.assert_allclose(fit.test_scores, [[2 / 3, 1 / 3]])
    weighted = fit_knn(train_x, train_y, test_x, False, False, ks=[3], distance_weighted=True, standardiser=identity)
    dist = 1 - np.cos(np.array([0.05, 0.05, 0.15]))
    w = 1 / (dist + 1e-6)
    np.testing.assert_allclose(weighted.test_scores, [[w[:2].sum() / w.sum(), w[2] / w.sum()]], rtol=1e-5)


def test_knn_k_grid_is_capped_by_the_smallest_class():
    x, y = blobs(300, 3, sep=4.0, seed=6)
    train_x, train_y, test_x, test_y = split(x, y, 200)
    idx = scarcity_subset(train_y, None, 3, seed=0)
    result = fit_probe(train_x[idx], train_y[idx], test_x, test_y, names(3), False, seed=0, probe="knn")
    assert result.hyperparameters["k"] == 1.0
    assert any("reduced to [1]" in w for w in result.warnings)


def test_knn_depends_on_the_seed_only_through_the_subset():
    x, y = blobs(300, 3, sep=3.0, seed=7)
    first, second = (fit_probe(*split(x, y, 200), names(3), False, seed=s, probe="knn") for s in (1, 99))
    assert first.metrics == second.metrics and np.array_equal(first.test_probabilities, second.test_probabilities)


# --------------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("probe, floor", [("linear", 0.95), ("knn", 0.35), ("mlp", 0.85)])
def test_regression_r2_high_on_linear_target_and_near_zero_on_noise(probe, floor):
    x, y = linear_target(500, seed=8)
    result = fit_probe(*split(x, y, 350), ["age"], False, seed=0, probe=probe, target_type="regression",
                       settings=ProbeSettings(max_epochs=120))
    assert result.metrics["r2"] > floor and result.metrics["pearson_r"] > floor ** 0.5 - 0.05
    assert result.test_probabilities is None and result.per_class_auroc == {}
    noise = np.random.default_rng(9).normal(size=(500, 1)).astype(np.float32)
    null = fit_probe(*split(x, noise, 350), ["age"], False, seed=0, probe=probe, target_type="regression",
                     settings=ProbeSettings(max_epochs=120))
    assert -0.3 <= null.metrics["r2"] <= 0.1


def test_ridge_model_reproduces_its_predictions():
    x, y = linear_target(300, seed=10)
    y2 = np.concatenate([y, -2 * y + 1], axis=1)
    train_x, train_y, test_x, test_y = split(x, y2, 200)
    result = fit_probe(train_x, train_y, test_x, test_y, ["a", "b"], False, seed=0, target_type="regression")
    assert result.coef.shape == (2, D) and result.intercept.shape == (2,)
    manual = ((test_x.astype(np.float64) - result.mean) / result.scale) @ result.coef.T + result.intercept
    np.testing.assert_allclose(manual, result.test_logits, atol=1e-9)
    assert result.c == pytest.approx(1 / result.hyperparameters["alpha"])


def test_regression_metrics_match_reference_implementations():
    rng = np.random.default_rng(11)
    y = rng.normal(size=(200, 2)) * 10 + 50
    pred = y + rng.normal(size=(200, 2)) * 3
    metrics = point_metrics(y, pred, "regression", False)
    expected = {
        "mae": np.mean([mean_absolute_error(y[:, k], pred[:, k]) for k in range(2)]),
        "rmse": np.mean([np.sqrt(mean_squared_error(y[:, k], pred[:, k])) for k in range(2)]),
        "r2": np.mean([r2_score(y[:, k], pred[:, k]) for k in range(2)]),
        "pearson_r": np.mean([pearsonr(y[:, k], pred[:, k])[0] for k in range(2)]),
    }
    assert metrics == pytest.approx(expected, abs=1e-10)


def test_regression_rejects_multilabel_and_bad_shapes():
    x, y = linear_target(100, seed=12)
    with pytest.raises(ValueError, match="multi_label must be false"):
        fit_probe(*split(x, y, 80), ["age"], True, seed=0, target_type="regression")
    with pytest.raises(ValueError, match="target names"):
        fit_probe(*split(x, y, 80), ["age", "bmi"], False, seed=0, target_type="regression")


# --------------------------------------------------------------------------------------------------
# Weighted metrics: unit weights = sklearn, integer weights = duplicated records
# --------------------------------------------------------------------------------------------------

def _sklearn_reference(y: np.ndarray, probs: np.ndarray, multi_label: bool) -> dict[str, float]:
    """The macro metrics as scikit-learn computes them (the probes' published definitions)."""
    mask = (y.sum(axis=0) > 0) & (y.sum(axis=0) < len(y))
    cols = np.flatnonzero(mask)
    out = {"auroc_macro": float(np.mean([roc_auc_score(y[:, k], probs[:, k]) for k in cols])),
           "auprc_macro": float(np.mean([average_precision_score(y[:, k], probs[:, k]) for k in cols]))}
    if multi_label:
        pred = (probs >= 0.5).astype(float)
        out["accuracy"] = float(np.mean(np.all(pred == y, axis=1)))
        out["f1_macro"] = float(f1_score(y[:, mask], pred[:, mask], average="macro", zero_division=0))
    else:
        truth, guess = y.argmax(axis=1), probs.argmax(axis=1)
        present = np.flatnonzero(y.sum(axis=0) > 0)
        out["accuracy"] = float(np.mean(truth == guess))
        out["f1_macro"] = float(f1_score(truth, guess, labels=present, average="macro", zero_division=0))
    return out


@pytest.mark.parametrize("multi_label, n_classes, single_label", [(False, 3, False), (False, 9, False),
                                                                   (True, 3, False), (True, 10, False),
                                                                   (True, 3, True)])
def test_unit_weight_metrics_equal_sklearn_bit_for_bit(multi_label, n_classes, single_label):
    rng = np.random.default_rng(12 + n_classes)
    n = 700
    if multi_label:
        y = (rng.random((n, n_classes)) < 0.3).astype(float)
        if single_label:
            y[:, 1:] = 0  # one evaluable label: sklearn's f1 then averages its negatives and positives
    else:
        y = np.eye(n_classes)[rng.integers(0, n_classes, n)]
    probs = rng.random((n, n_classes)) * 0.6 + 0.4 * y
    probs[::3] = np.round(probs[::3], 1)  # ties in part of the scores
    if not multi_label:
        probs = probs / probs.sum(axis=1, keepdims=True)
    metrics, _, _ = score_test_split(y, probs, names(n_classes), multi_label)
    reference = _sklearn_reference(y, probs, multi_label)
    assert {k: metrics[k] for k in reference} == reference  # exact: published numbers must not move


@pytest.mark.parametrize("multi_label", [False, True])
def test_weighted_metrics_equal_sklearn_and_duplication(multi_label):
    rng = np.random.default_rng(13)
    n, c = 120, 3
    y = (rng.random((n, c)) < 0.4).astype(float) if multi_label else np.eye(c)[rng.integers(0, c, n)]
    probs = np.round(rng.random((n, c)) * 0.6 + 0.4 * y, 1)  # coarse: many ties
    if not multi_label:
        probs = probs / probs.sum(axis=1, keepdims=True)
    reference, _, _ = score_test_split(y, probs, names(c), multi_label)
    assert point_metrics(y, probs, "classification", multi_label) == reference
    counts = rng.integers(0, 4, n)
    weighted = weighted_metrics(y, probs, "classification", multi_label, counts[None, :].astype(float))
    duplicated, _, _ = score_test_split(np.repeat(y, counts, axis=0), np.repeat(probs, counts, axis=0), names(c),
                                        multi_label)
    assert {k: float(v[0]) for k, v in weighted.items()} == pytest.approx(duplicated, abs=1e-12)
    assert weighted["auroc_macro"][0] == pytest.approx(
        np.mean([roc_auc_score(y[:, k], probs[:, k], sample_weight=counts) for k in range(c)]), abs=1e-12)
    assert weighted["auprc_macro"][0] == pytest.approx(
        np.mean([average_precision_score(y[:, k], probs[:, k], sample_weight=counts) for k in range(c)]), abs=1e-12)


def test_weighted_regression_equals_duplication():
    rng = np.random.default_rng(14)
    y, pred = rng.normal(size=(80, 1)), rng.normal(size=(80, 1))
    counts = rng.integers(0, 3, 80)
    weighted = weighted_metrics(y, pred, "regression", False, counts[None, :].astype(float))
    plain = point_metrics(np.repeat(y, counts, axis=0), np.repeat(pred, counts, axis=0), "regression", False)
    assert {k: float(v[0]) for k, v in weighted.items()} == pytest.approx(plain, abs=1e-10)


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("probe, target_type", [("knn", "classification"), ("mlp", "classification"),
                                                ("mlp", "regression"), ("linear", "regression")])
def test_same_inputs_give_identical_outputs(probe, target_type):
    x, y = blobs(200, 3, sep=3.0, seed=15) if target_type == "classification" else linear_target(200, seed=15)
    class_names = names(3) if target_type == "classification" else ["age"]
    runs = [fit_probe(*split(x, y, 140), class_names, False, seed=5, probe=probe, target_type=target_type,
                      settings=FAST_MLP, bootstrap=50, bootstrap_seed=3) for _ in range(2)]
    first, second = runs
    assert first.metrics == second.metrics and first.hyperparameters == second.hyperparameters
    assert first.metrics_ci_low == second.metrics_ci_low and first.metrics_ci_high == second.metrics_ci_high
    assert np.array_equal(first.test_logits, second.test_logits)


def _blas_threads() -> set[int]:
    """The thread counts of every loaded BLAS."""
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_fits_in_any_thread_run_single_threaded_blas_and_agree():
    # A server fits in whichever worker thread is free; threadpoolctl obeys only the first thread that
    # set an OpenBLAS limit, so fits in a second thread once ran with the host's BLAS threads.
    x, y = blobs(200, 3, sep=3.0, seed=18)
    noise = np.random.default_rng(18).normal(size=(200, 16)).astype(np.float32)
    parts = split(np.hstack([x, noise]), y, 140)  # 32 dimensions: there two BLAS threads change float32 sums
    seen, fits = [], []

    def fit() -> None:
        probe = fit_probe(*parts, names(3), False, seed=2, probe="mlp", settings=FAST_MLP)
        with single_threaded_blas():
            seen.append(_blas_threads())
        fits.append(probe)

    with threadpool_limits(2, user_api="blas"):  # as on a 2-core host, whatever this one has; main thread holds it
        assert _blas_threads() == {2}
        fit()
        for _ in range(2):  # fresh threads, neither the one that set the limit above
            worker = threading.Thread(target=fit)
            worker.start()
            worker.join()
        assert _blas_threads() == {2}  # restored after the fits
    assert seen == [{1}, {1}, {1}]
    assert all(np.array_equal(f.test_probabilities, fits[0].test_probabilities) for f in fits[1:])


def test_mlp_seed_changes_the_model():
    x, y = blobs(200, 3, sep=3.0, seed=16)
    a, b = (fit_probe(*split(x, y, 140), names(3), False, seed=s, probe="mlp", settings=FAST_MLP) for s in (0, 1))
    assert not np.array_equal(a.test_probabilities, b.test_probabilities)


# --------------------------------------------------------------------------------------------------
# Training subsets
# --------------------------------------------------------------------------------------------------

SETTINGS = [(0.2, None), (1.0, None), (None, 4)]


def test_scarcity_subsets_equal_individual_subsets():
    _, y = multi_hot(300, seed=17)
    groups = np.arange(300) // 2
    for g in (None, groups):
        many = scarcity_subsets(y, SETTINGS + [(None, None)], seed=3, groups=g)
        for (fraction, k_shot), idx in zip(SETTINGS + [(None, None)], many):
            assert np.array_equal(idx, scarcity_subset(y, fraction, k_shot, seed=3, groups=g))


def test_patient_split_keeps_patients_whole_and_reaches_rare_classes():
    patients = [f"p{i // 3}" for i in range(300)]  # 100 patients, 3 records each
    labels = np.zeros((300, 3))
    labels[:, 0] = 1
    labels[:6, :] = [0, 0, 1]  # class 2: two patients only
    train, test = patient_split(patients, labels, 0.2, seed=4)
    assert sorted(train + test) == list(range(300))
    assert not {patients[i] for i in train} & {patients[i] for i in test}
    assert labels[test, 2].sum() > 0 and labels[train, 2].sum() > 0
    assert (train, test) == patient_split(patients, labels, 0.2, seed=4)
    assert test != patient_split(patients, labels, 0.2, seed=5)[1]


def test_regression_subsets_are_nested_seeded_prefixes_with_a_floor():
    small, large = regression_subset(200, 0.1, seed=3), regression_subset(200, 0.5, seed=3)
    assert len(small) == 20 and len(large) == 100 and set(small) <= set(large)
    assert np.array_equal(small, np.sort(small)) and not np.array_equal(small, regression_subset(200, 0.1, seed=4))
    assert len(regression_subset(200, 0.001, seed=3)) == 5
