"""Uncertainty and comparison statistics: patient-level bootstrap CIs, paired bootstrap, DeLong, label efficiency."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from services.probing.compare import delong_covariance, delong_macro, delong_test, holm, paired_bootstrap
from services.probing.efficiency import label_efficiency
from services.probing.bootstrap import bootstrap_ci, group_index, resample_weights, seed_mean_ci
from services.probing.probes import fit_probe


def gaussian_scores(n_pos: int, n_neg: int, d: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n, 1] and scores [n, 1]: positives N(d, 1), negatives N(0, 1); true AUROC = Φ(d / √2)."""
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)][:, None]
    scores = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)][:, None]
    return y, scores


# --------------------------------------------------------------------------------------------------
# Bootstrap CIs
# --------------------------------------------------------------------------------------------------

def test_bootstrap_ci_covers_the_true_auroc_at_about_the_nominal_rate():
    d = 1.0
    truth = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(0)
    covered = 0
    for sim in range(100):
        y, s = gaussian_scores(100, 100, d, rng)
        low, high = bootstrap_ci(y, s, "classification", True, None, 200, seed=sim, keys=["auroc_macro"])
        covered += low["auroc_macro"] <= truth <= high["auroc_macro"]
    assert 0.85 <= covered / 100 <= 0.99


def test_patient_level_bootstrap_widens_the_ci_of_duplicated_records():
    rng = np.random.default_rng(1)
    y, s = gaussian_scores(60, 60, 1.0, rng)
    # Every patient contributes five near-identical records: 120 patients, 600 records.
    y5, s5 = np.repeat(y, 5, axis=0), np.repeat(s, 5, axis=0) + rng.normal(0, 0.01, (600, 1))
    patients = np.repeat(np.arange(120), 5).astype(str)
    rec_low, rec_high = bootstrap_ci(y5, s5, "classification", True, None, 400, seed=2, keys=["auroc_macro"])
    pat_low, pat_high = bootstrap_ci(y5, s5, "classification", True, patients, 400, seed=2, keys=["auroc_macro"])
    record_width = rec_high["auroc_macro"] - rec_low["auroc_macro"]
    patient_width = pat_high["auroc_macro"] - pat_low["auroc_macro"]
    assert patient_width > 1.6 * record_width  # ≈ √5 in theory


def test_resampling_draws_whole_groups():
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    weights = np.concatenate(list(resample_weights(group_index(groups, 6), 50, seed=3)))
    assert weights.shape == (50, 6)
    # Records of one patient always share a weight, and every row draws 3 patients.
    assert np.all(weights[:, 0] == weights[:, 1]) and np.all(weights[:, 3] == weights[:, 5])
    assert np.all(weights[:, [0, 2, 3]].sum(axis=1) == 3)
    with pytest.raises(ValueError, match="test groups has 2 entries"):
        group_index(["a", "b"], 6)


def test_probe_cis_bracket_the_point_estimates_and_repeat_with_the_seed():
    rng = np.random.default_rng(4)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 300)]
    x = (y @ rng.normal(size=(3, 8)) + rng.normal(size=(300, 8))).astype(np.float32)
    groups = (np.arange(100) // 2).astype(str)
    result = fit_probe(x[:200], y[:200], x[200:], y[200:], ["a", "b", "c"], False, 0, probe="knn",
                       test_groups=groups, bootstrap=300, bootstrap_seed=5)
    assert result.bootstrap == 300
    assert set(result.metrics_ci_low) == set(result.metrics) == set(result.metrics_ci_high)
    for key, value in result.metrics.items():
        assert result.metrics_ci_low[key] <= value <= result.metrics_ci_high[key], key
    again = bootstrap_ci(y[200:], result.test_probabilities, "classification", False, groups, 300, 5)
    assert again == (result.metrics_ci_low, result.metrics_ci_high)
    no_ci = fit_probe(x[:200], y[:200], x[200:], y[200:], ["a", "b", "c"], False, 0, probe="knn")
    assert no_ci.metrics_ci_low == {} and no_ci.bootstrap == 0


def test_regression_cis():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x @ rng.normal(size=(8, 1)) + rng.normal(size=(300, 1))).astype(np.float32)
    result = fit_probe(x[:200], y[:200], x[200:], y[200:], ["age"], False, 0, target_type="regression",
                       bootstrap=200)
    assert set(result.metrics_ci_low) == {"mae", "rmse", "r2", "pearson_r"}
    for key, value in result.metrics.items():
        assert result.metrics_ci_low[key] <= value <= result.metrics_ci_high[key], key


# --------------------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------------------

def slow_seed_mean_ci(y: np.ndarray, scores: list[np.ndarray], groups: np.ndarray, n_boot: int,
                      seed: int) -> tuple[float, float]:
    """The definition, record by record: resample patients, rebuild the test set, sklearn AUROC per seed, mean."""
    names, group_of = np.unique(groups, return_inverse=True)
    means = []
    for weights in resample_weights(group_of, n_boot, seed, block=1):
        rows = np.repeat(np.arange(len(y)), weights[0].astype(int))
        if len(set(y[rows])) < 2:
            continue
        means.append(np.mean([roc_auc_score(y[rows], s[rows]) for s in scores]))
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_seed_mean_ci_equals_the_definition():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(30), 2)  # two ECGs per patient
    y = (rng.random(60) < 0.4).astype(float)
    scores = [y * d + rng.normal(size=60) for d in (0.5, 1.0, 1.5)]
    outputs = [np.stack([1 - 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-s))], axis=1) for s in scores]
    onehot = np.stack([1 - y, y], axis=1)
    low, high = seed_mean_ci(onehot, outputs, "classification", False, groups, 300, seed=7)
    assert (low["auroc_macro"], high["auroc_macro"]) == pytest.approx(slow_seed_mean_ci(y, scores, groups, 300, 7),
                                                                     abs=1e-12)


def test_seed_mean_ci_of_one_seed_is_the_ordinary_bootstrap_ci():
    rng = np.random.default_rng(4)
    y = (rng.random(80) < 0.5).astype(float)
    probs = np.clip(y * 0.3 + rng.random(80) * 0.7, 0, 1)
    outputs = np.stack([1 - probs, probs], axis=1)
    onehot = np.stack([1 - y, y], axis=1)
    groups = np.arange(80) // 2
    assert seed_mean_ci(onehot, [outputs], "classification", False, groups, 200, 1) == \
        bootstrap_ci(onehot, outputs, "classification", False, groups, 200, 1)
    # Averaging seeds narrows nothing it should not: three copies of one fit give the same interval.
    tripled = seed_mean_ci(onehot, [outputs] * 3, "classification", False, groups, 200, 1)
    single = bootstrap_ci(onehot, outputs, "classification", False, groups, 200, 1)
    for side in (0, 1):  # (x + x + x) / 3 may differ from x in the last bit
        assert tripled[side] == pytest.approx(single[side], abs=1e-12)


def test_paired_bootstrap_identical_models():
    rng = np.random.default_rng(7)
    y = np.eye(3)[rng.integers(0, 3, 150)]
    probs = rng.dirichlet(np.ones(3), 150)
    out = paired_bootstrap(y, probs, probs.copy(), n_boot=200, seed=0)
    assert out["diff"] == 0 and out["ci_low"] == 0 and out["ci_high"] == 0 and out["p_value"] == 1.0


def test_paired_bootstrap_detects_a_better_model_and_is_antisymmetric():
    rng = np.random.default_rng(8)
    y = np.eye(2)[rng.integers(0, 2, 300)]
    good = np.clip(y * 0.6 + rng.random((300, 2)) * 0.5, 0, None)
    bad = np.clip(y * 0.1 + rng.random((300, 2)) * 0.5, 0, None)
    groups = np.arange(300) // 3
    ab = paired_bootstrap(y, good, bad, groups=groups, n_boot=500, seed=1)
    ba = paired_bootstrap(y, bad, good, groups=groups, n_boot=500, seed=1)
    assert ab["diff"] > 0 and ab["ci_low"] > 0 and ab["p_value"] < 0.01
    assert ba["diff"] == pytest.approx(-ab["diff"]) and ba["ci_high"] == pytest.approx(-ab["ci_low"])
    assert ab["p_value"] == ba["p_value"]


def test_paired_bootstrap_regression_metric():
    rng = np.random.default_rng(9)
    y = rng.normal(size=(200, 1))
    close, far = y + rng.normal(0, 0.3, (200, 1)), y + rng.normal(0, 1.0, (200, 1))
    out = paired_bootstrap(y, close, far, n_boot=300, seed=2, metric="mae")
    assert out["diff"] < 0 and out["ci_high"] < 0 and out["p_value"] < 0.01
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(y, close, far, metric="bleu")


# --------------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------------

def _psi(x: float, y: float) -> float:
    """Mann-Whitney kernel: 1 if the positive scores higher, 1/2 on ties."""
    return 1.0 if x > y else 0.5 if x == y else 0.0


def slow_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROCs, covariance) straight from DeLong et al. (1988): O(m n) structural components."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)
    v10 = np.array([[np.mean([_psi(s[i], s[j]) for j in neg]) for i in pos] for s in (a, b)])
    v01 = np.array([[np.mean([_psi(s[i], s[j]) for i in pos]) for j in neg] for s in (a, b)])
    aucs = v10.mean(axis=1)
    s10 = np.array([[np.sum((v10[r] - aucs[r]) * (v10[t] - aucs[t])) / (m - 1) for t in range(2)] for r in range(2)])
    s01 = np.array([[np.sum((v01[r] - aucs[r]) * (v01[t] - aucs[t])) / (n - 1) for t in range(2)] for r in range(2)])
    return aucs, s10 / m + s01 / n


def test_fast_delong_equals_the_definition_with_ties():
    rng = np.random.default_rng(10)
    y = (rng.random(40) < 0.4).astype(int)
    a = np.round(y * 0.8 + rng.normal(size=40), 1)  # rounded: plenty of ties
    b = np.round(y * 0.3 + 0.5 * a + rng.normal(size=40), 1)
    aucs, cov = delong_covariance(y, np.stack([a, b]))
    ref_aucs, ref_cov = slow_delong(y, a, b)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    assert aucs[0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    result = delong_test(y, a, b)
    expected_z = (ref_aucs[0] - ref_aucs[1]) / np.sqrt(ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1])
    assert result["z"] == pytest.approx(expected_z, rel=1e-10)
    assert result["p_value"] == pytest.approx(2 * norm.sf(abs(expected_z)), rel=1e-10)


def test_delong_identical_scores():
    rng = np.random.default_rng(11)
    y = (rng.random(100) < 0.5).astype(int)
    s = rng.normal(size=100) + y
    result = delong_test(y, s, s.copy())
    assert result["diff"] == 0 and result["z"] == 0 and result["p_value"] == 1.0
    # A monotone transform ranks identically: same AUROC, no variance of the difference.
    assert delong_test(y, s, np.exp(s))["p_value"] == 1.0


def test_delong_null_p_values_are_roughly_uniform():
    rng = np.random.default_rng(12)
    rejections = 0
    for _ in range(200):
        y = (rng.random(120) < 0.5).astype(int)
        # Two equally good, correlated scorers.
        shared = rng.normal(size=120)
        a, b = y + shared + rng.normal(size=120), y + shared + rng.normal(size=120)
        rejections += delong_test(y, a, b)["p_value"] < 0.05
    assert 0.01 <= rejections / 200 <= 0.11


def test_delong_needs_both_sides():
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_test([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])


def test_holm_known_answer():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.02, 0.9]) == pytest.approx([0.04, 0.9])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step


def test_delong_macro_summarises_per_class_tests():
    rng = np.random.default_rng(13)
    y = np.eye(3)[rng.integers(0, 3, 300)]
    y[:, 2] = 0
    y[:5, 2], y[:5, 0], y[:5, 1] = 1, 0, 0  # class c2: 5 positives
    a = y * 1.5 + rng.normal(size=(300, 3))
    b = y * 0.5 + rng.normal(size=(300, 3))
    out = delong_macro(y, a, b, class_names=["c0", "c1", "c2"])
    per = out["per_class"]
    assert set(per) == {"c0", "c1", "c2"} and out["skipped"] == []
    assert out["diff_macro"] == pytest.approx(np.mean([per[k]["diff"] for k in per]))
    assert [per[k]["p_holm"] for k in per] == pytest.approx(holm([per[k]["p_value"] for k in per]))
    assert per["c0"]["p_holm"] < 0.01 and out["n_significant"] >= 2
    y[:, 2] = 0
    assert delong_macro(y, a, b, class_names=["c0", "c1", "c2"])["skipped"] == ["c2"]


# --------------------------------------------------------------------------------------------------
# Label efficiency
# --------------------------------------------------------------------------------------------------

def test_label_efficiency_known_answers():
    out = label_efficiency([0.01, 0.1, 1.0], [0.6, 0.8, 0.9])
    # Trapezoids over log10 f = -2, -1, 0: (0.7 + 0.85) / 2.
    assert out["aulc"] == pytest.approx(0.775)
    assert out["fraction_to_95pct"] == 1.0 and out["full_score"] == 0.9  # 0.8 < 0.95 * 0.9
    assert label_efficiency([1.0, 0.01, 0.1], [0.9, 0.5, 0.86])["fraction_to_95pct"] == 0.1
    assert label_efficiency([0.01, 0.1, 1.0], [0.7, 0.7, 0.7])["aulc"] == pytest.approx(0.7)
    assert label_efficiency([0.05], [0.8])["aulc"] == 0.8
    uneven = label_efficiency([0.001, 0.01, 1.0], [0.5, 0.7, 0.9])
    assert uneven["aulc"] == pytest.approx((0.6 * 1 + 0.8 * 2) / 3)


def test_label_efficiency_averages_seeds_and_needs_full_data_for_the_threshold():
    seeds = label_efficiency([0.1, 0.1, 1.0, 1.0], [0.7, 0.9, 0.85, 0.95])
    assert seeds["aulc"] == pytest.approx(0.85) and seeds["fraction_to_95pct"] == 1.0
    assert label_efficiency([0.01, 0.1], [0.6, 0.8])["fraction_to_95pct"] is None
    assert label_efficiency([0.1, 1.0], [-0.2, -0.1])["fraction_to_95pct"] is None
    with pytest.raises(ValueError, match="fractions must be in"):
        label_efficiency([0.0, 1.0], [0.5, 0.9])
    with pytest.raises(ValueError, match="as many scores"):
        label_efficiency([0.1, 1.0], [0.5])
