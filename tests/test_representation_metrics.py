"""Representation metrics of services.analysis (structure, CKA, SHAP quantities): known answers."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from services.analysis import alignment, core, neighbourhood, separability, shap_stats, similarity, spectrum, structure

# --------------------------------------------------------------------------- data


def clusters(n: int = 300, d: int = 16, k: int = 3, spread: float = 8.0, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """k well-separated Gaussian clusters with their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    y = rng.integers(0, k, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), [f"c{i}" for i in y]


def random_orthogonal(d: int, seed: int) -> np.ndarray:
    """A random d x d orthogonal matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def equal_singular_values(n: int, d: int, r: int, value: float = 3.0, seed: int = 0) -> np.ndarray:
    """An [n, d] column-centred matrix with exactly r non-zero singular values, all equal to value."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, r))
    u, _ = np.linalg.qr(a - a.mean(axis=0))  # orthonormal columns that stay centred
    v, _ = np.linalg.qr(rng.normal(size=(d, r)))
    return value * u @ v.T


def patients_and_sources(n_patients: int = 300, records: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-record patient ids and sources; every patient belongs to one of three sources."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_patients), records)
    sources = np.array(["ptbxl", "chapman", "code15"])[rng.integers(0, 3, n_patients)][groups]
    return groups.astype(str), sources


def gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Reference CKA in sample space: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, H centring."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    kc, lc = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(kc * lc) / math.sqrt(np.sum(kc * kc) * np.sum(lc * lc)))


# --------------------------------------------------------------------------- CKA


def test_cka_of_a_matrix_with_itself_is_one():
    x = np.random.default_rng(0).normal(size=(200, 12))
    assert similarity.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_matches_the_sample_space_hsic_definition():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 6))
    y = np.tanh(x @ rng.normal(size=(6, 9))) + 0.5 * rng.normal(size=(80, 9))
    assert similarity.linear_cka(x, y) == pytest.approx(gram_cka(x, y), rel=1e-10)
    assert similarity.linear_cka(x, y) == pytest.approx(similarity.linear_cka(y, x), rel=1e-12)


def test_cka_is_invariant_to_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 10)) @ np.diag(np.linspace(0.2, 3, 10))
    y = x[:, :4] ** 2 + rng.normal(size=(300, 4))
    transformed = 7.5 * x @ random_orthogonal(10, 3) + 11.0  # rotation, scaling and a shift
    assert similarity.linear_cka(x, transformed) == pytest.approx(1.0, abs=1e-10)
    assert similarity.linear_cka(y, transformed) == pytest.approx(similarity.linear_cka(y, x), rel=1e-10)


def test_cka_is_not_invariant_to_an_arbitrary_invertible_map():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 8))
    stretch = np.diag([1, 1, 1, 1, 1, 1, 1, 20.0]) @ random_orthogonal(8, 5)  # invertible, not orthogonal
    assert np.linalg.matrix_rank(stretch) == 8
    assert similarity.linear_cka(x, x @ stretch) < 0.9


def test_cka_of_independent_random_matrices_is_small():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(4000, 5)), rng.normal(size=(4000, 5))
    assert similarity.linear_cka(x, y) < 0.02


def test_cka_undefined_and_invalid_input():
    x = np.random.default_rng(7).normal(size=(20, 3))
    assert similarity.linear_cka(x, np.ones((20, 4))) is None  # constant embeddings: no variance to compare
    with pytest.raises(ValueError, match="rows"):
        similarity.linear_cka(x, x[:-1])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        similarity.linear_cka(bad, x)


def test_cka_matrix_is_symmetric_and_matches_pairwise_cka():
    rng = np.random.default_rng(8)
    base = rng.normal(size=(150, 6))
    models = {"a": base, "b": base @ random_orthogonal(6, 9) * 3, "c": rng.normal(size=(150, 11)),
              "flat": np.zeros((150, 2))}
    cka = similarity.cka_matrix(models)
    assert set(cka) == set(itertools.product(models, models))
    for a, b in itertools.combinations(["a", "b", "c"], 2):
        assert cka[(a, b)] == cka[(b, a)] == pytest.approx(similarity.linear_cka(models[a], models[b]), rel=1e-12)
    assert cka[("a", "b")] == pytest.approx(1.0, abs=1e-10)
    assert cka[("a", "a")] == pytest.approx(1.0, abs=1e-12)
    assert cka[("flat", "a")] is None and cka[("flat", "flat")] is None
    with pytest.raises(ValueError, match="same rows"):
        similarity.cka_matrix({"a": base, "short": base[:-1]})


# --------------------------------------------------------------------------- spectrum


@pytest.mark.parametrize("r", [1, 3, 7])
def test_effective_rank_and_participation_ratio_of_r_equal_singular_values_is_r(r):
    x = equal_singular_values(100, 12, r)
    assert spectrum.effective_rank(x) == pytest.approx(r, rel=1e-6)
    assert spectrum.participation_ratio(x) == pytest.approx(r, rel=1e-9)
    # Both are scale- and shift-invariant.
    assert spectrum.effective_rank(5 * x + 2) == pytest.approx(r, rel=1e-6)


def test_participation_ratio_of_isotropic_data_is_close_to_d():
    x = np.random.default_rng(10).normal(size=(20000, 10))
    assert 9.5 < spectrum.participation_ratio(x) <= 10.0
    assert 9.5 < spectrum.effective_rank(x) <= 10.0


def test_spectrum_of_anisotropic_data_is_lower_and_constant_data_is_zero():
    x = np.random.default_rng(11).normal(size=(2000, 10)) * np.array([10.0] + [0.1] * 9)
    assert spectrum.participation_ratio(x) < 1.5 and spectrum.effective_rank(x) < 3
    assert spectrum.effective_rank(np.ones((10, 4))) == 0.0 == spectrum.participation_ratio(np.ones((10, 4)))


# --------------------------------------------------------------------------- k-NN label agreement


def test_knn_agreement_is_high_for_separated_clusters():
    x, y = clusters()
    result = neighbourhood.knn_label_agreement(x, y, k=10)
    assert result.agreement > 0.95 and result.k == 10 and result.metric == "cosine"
    assert set(result.per_class) == set(y) and min(result.per_class.values()) > 0.9
    assert result.chance == pytest.approx(sum((y.count(c) / len(y)) ** 2 for c in set(y)))


def test_knn_agreement_of_random_labels_is_near_chance():
    x, _ = clusters()
    random_labels = [f"r{i}" for i in np.random.default_rng(12).integers(0, 3, len(x))]
    result = neighbourhood.knn_label_agreement(x, random_labels, k=10)
    assert abs(result.agreement - result.chance) < 0.05


def test_knn_agreement_excludes_the_point_itself_even_for_duplicates():
    # Two pairs of identical points far apart: the only other neighbour of each is its twin.
    x = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert neighbourhood.knn_label_agreement(x, ["a", "a", "b", "b"], k=1).agreement == 1.0
    assert neighbourhood.knn_label_agreement(x, ["a", "b", "a", "b"], k=1).agreement == 0.0
    result = neighbourhood.knn_label_agreement(x, ["a", "a", "b", "b"], k=99, metric="euclidean")
    assert result.k == 3 and result.agreement == pytest.approx(1 / 3)
    assert result.chance == 0.5


# --------------------------------------------------------------------------- trustworthiness / continuity


def test_continuity_equals_sklearn_trustworthiness_with_roles_swapped():
    from sklearn.manifold import trustworthiness

    rng = np.random.default_rng(13)
    x = rng.normal(size=(250, 10))
    projection = x[:, :2] + 0.5 * rng.normal(size=(250, 2))
    for k in (1, 5, 12):
        assert neighbourhood.continuity(x, projection, k) == pytest.approx(
            trustworthiness(projection, x, n_neighbors=k), abs=1e-12)
        assert neighbourhood.trustworthiness(x, projection, k, "cosine") == pytest.approx(
            trustworthiness(x, projection, n_neighbors=k, metric="cosine"), abs=1e-12)


def test_identity_projection_preserves_everything_and_noise_does_not():
    rng = np.random.default_rng(14)
    x = rng.normal(size=(200, 2))
    same = neighbourhood.neighbourhood_preservation(x, x, k=10)
    assert same.trustworthiness == pytest.approx(1.0) and same.continuity == pytest.approx(1.0)
    noise = neighbourhood.neighbourhood_preservation(x, rng.normal(size=(200, 2)), k=10)
    assert noise.trustworthiness < 0.7 and noise.continuity < 0.7


def test_dropping_dimensions_tears_neighbourhoods_more_than_it_invents_them():
    # Projecting 3-D data with a large third axis onto its first two axes merges distant points
    # (intrusions, low trustworthiness); original neighbours stay close (high continuity).
    rng = np.random.default_rng(15)
    x = rng.normal(size=(300, 3)) * np.array([1.0, 1.0, 5.0])
    result = neighbourhood.neighbourhood_preservation(x, x[:, :2], k=10)
    assert result.continuity > result.trustworthiness


# --------------------------------------------------------------------------- site separability


def test_sites_sharing_one_distribution_are_not_separable():
    groups, sources = patients_and_sources()
    x = np.random.default_rng(16).normal(size=(len(groups), 16))
    result = separability.site_separability(x, sources, groups, seed=0)
    assert result.auroc < 0.65 and result.n_folds == 5
    assert set(result.per_source) == {"ptbxl", "chapman", "code15"}


def test_a_site_specific_offset_makes_sites_separable():
    groups, sources = patients_and_sources()
    x = np.random.default_rng(16).normal(size=(len(groups), 16))
    for i, site in enumerate(["ptbxl", "chapman", "code15"]):
        x[sources == site, 2 * i:2 * i + 2] += 2.5  # each site shifts its own two dimensions
    result = separability.site_separability(x, sources, groups, seed=0)
    assert result.auroc > 0.95
    assert separability.site_separability(x, sources, groups, seed=0) == result  # deterministic


def test_site_separability_edge_cases():
    groups, sources = patients_and_sources(n_patients=3, records=4)
    x = np.random.default_rng(17).normal(size=(len(groups), 4))
    assert separability.site_separability(x, sources, groups, cv=5).n_folds == 3  # capped by the patients
    with pytest.raises(ValueError, match="at least 2 sources"):
        separability.site_separability(x, ["one"] * len(x), groups)
    with pytest.raises(ValueError, match="one patient"):
        separability.site_separability(x, sources, ["p"] * len(x))


# --------------------------------------------------------------------------- alignment / uniformity


def test_alignment_and_uniformity_of_antipodal_and_identical_points():
    antipodal = alignment.alignment_uniformity(np.array([[2.0, 0.0], [-5.0, 0.0]]), ["a", "a"])
    assert antipodal.alignment == pytest.approx(4.0) and antipodal.uniformity == pytest.approx(-8.0)
    identical = alignment.alignment_uniformity(np.array([[1.0, 1.0]] * 3 + [[3.0, 3.0]]), ["a", "a", "b", "b"])
    assert identical.alignment == pytest.approx(0.0) and identical.uniformity == pytest.approx(0.0)
    assert identical.exact and identical.alignment_pairs == 2 and identical.uniformity_pairs == 6


def test_alignment_uses_same_label_pairs_only():
    # Orthogonal unit vectors: same-label pairs at distance^2 = 2 except the identical pair (0).
    x = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    result = alignment.alignment_uniformity(x, ["a", "a", "b", "b"])
    assert result.alignment == pytest.approx((0.0 + 2.0) / 2)
    assert result.uniformity == pytest.approx(math.log((1 + 5 * math.exp(-4.0)) / 6))
    assert alignment.alignment_uniformity(x, ["a", "b", "c", "d"]).alignment is None


def test_clustered_embeddings_are_better_aligned_and_less_uniform_than_random():
    x, y = clusters()
    noise = np.random.default_rng(18).normal(size=x.shape)
    tight, spread = alignment.alignment_uniformity(x, y), alignment.alignment_uniformity(noise, y)
    assert tight.alignment < 0.2 < 1.5 < spread.alignment
    assert tight.uniformity > spread.uniformity


def test_sampled_pairs_approximate_the_exact_values_deterministically():
    x, y = clusters(n=400)
    exact = alignment.alignment_uniformity(x, y)
    sampled = alignment.alignment_uniformity(x, y, seed=3, max_pairs=20_000)
    assert exact.exact and not sampled.exact
    assert sampled.uniformity_pairs == sampled.alignment_pairs == 20_000
    assert sampled.alignment == pytest.approx(exact.alignment, rel=0.05)
    assert sampled.uniformity == pytest.approx(exact.uniformity, abs=0.05)
    assert alignment.alignment_uniformity(x, y, seed=3, max_pairs=20_000) == sampled


# --------------------------------------------------------------------------- SHAP quantities


def test_gini_known_values():
    assert shap_stats.gini(np.ones(10)) == pytest.approx(0.0, abs=1e-12)
    assert shap_stats.gini(np.zeros(10)) == 0.0
    for n in (2, 10, 1000):
        one_hot = np.zeros(n)
        one_hot[n // 2] = 3.0
        assert shap_stats.gini(one_hot) == pytest.approx(1 - 1 / n)
    v = np.random.default_rng(19).exponential(size=50)
    brute = np.abs(v[:, None] - v[None, :]).sum() / (2 * len(v) ** 2 * v.mean())
    assert shap_stats.gini(v) == pytest.approx(brute, rel=1e-12)
    with pytest.raises(ValueError):
        shap_stats.gini(np.array([1.0, -1.0]))


def test_shap_concentration_of_uniform_and_one_dominant_importance():
    uniform = shap_stats.shap_concentration(np.ones((3, 20)))
    assert (uniform.dims_for_50pct, uniform.dims_for_90pct) == (10, 18)
    assert uniform.gini == pytest.approx(0.0, abs=1e-12)
    dominant = np.full((2, 20), 1e-6)
    dominant[:, 4] = 1.0
    result = shap_stats.shap_concentration(dominant)
    assert (result.dims_for_50pct, result.dims_for_90pct) == (1, 1)
    assert result.gini > 0.94 and len(result.gini_per_class) == 2


def test_linear_shap_reports_the_same_concentration():
    rng = np.random.default_rng(20)
    d = 12
    result = core.linear_shap(rng.normal(size=(3, d)), rng.normal(size=3), rng.normal(size=d),
                              rng.uniform(0.5, 2, size=d), rng.normal(size=(100, d)), rng.normal(size=(40, d)),
                              ["a", "b", "c"])
    expected = shap_stats.shap_concentration(result.mean_abs.astype(np.float64))
    assert (result.dims_for_50pct, result.dims_for_90pct) == (expected.dims_for_50pct, expected.dims_for_90pct)
    assert result.gini == pytest.approx(expected.gini, rel=1e-6)
    assert 1 <= result.dims_for_50pct <= result.dims_for_90pct <= d


def test_jaccard_known_values():
    assert shap_stats.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert shap_stats.jaccard({1}, {2}) == 0.0
    assert shap_stats.jaccard(set(), set()) == 1.0
    assert shap_stats.topk_jaccard([{1, 2}, {3}], [{1, 2}, {4}]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="sets_b"):
        shap_stats.topk_jaccard([{1}], [])


def test_top_k_dims_breaks_ties_by_lower_index():
    assert shap_stats.top_k_dims(np.array([[1.0, 3.0, 3.0, 2.0]]), k=2) == [frozenset({1, 2})]
    assert shap_stats.top_k_dims(np.array([[1.0, 1.0, 1.0]]), k=2) == [frozenset({0, 1})]
    assert shap_stats.top_k_dims(np.array([[1.0, 2.0]]), k=10) == [frozenset({0, 1})]  # clamped to D


def test_chance_jaccard_known_values():
    assert shap_stats.chance_jaccard(1, 8) == pytest.approx(1 / 8)
    assert shap_stats.chance_jaccard(5, 5) == pytest.approx(1.0)
    rng = np.random.default_rng(21)
    draws = [shap_stats.jaccard(set(rng.choice(40, 6, replace=False)), set(rng.choice(40, 6, replace=False)))
             for _ in range(20000)]
    assert shap_stats.chance_jaccard(6, 40) == pytest.approx(np.mean(draws), abs=0.005)


def importance_with_top(c: int, d: int, tops: list[range]) -> np.ndarray:
    """[c, d] importances whose top-len(top) dims of class i are tops[i]."""
    m = np.full((c, d), 0.01)
    for i, top in enumerate(tops):
        m[i, list(top)] = np.linspace(2.0, 1.0, len(top))
    return m


def test_shap_stability_known_values():
    a = importance_with_top(2, 30, [range(0, 10), range(10, 20)])
    b = importance_with_top(2, 30, [range(5, 15), range(10, 20)])
    result = shap_stats.shap_stability([a, a.copy()], k=10)
    assert result.mean_jaccard == 1.0 and result.per_class == {"0": 1.0, "1": 1.0}
    result = shap_stats.shap_stability([a, b], k=10, class_names=["afib", "normal"], run_names=["seed0", "seed1"])
    assert result.per_class == {"afib": pytest.approx(5 / 15), "normal": 1.0}
    assert result.mean_jaccard == pytest.approx((1 / 3 + 1) / 2)
    assert result.per_pair == {("seed0", "seed1"): pytest.approx((1 / 3 + 1) / 2)}
    assert result.k == 10 and result.chance == pytest.approx(shap_stats.chance_jaccard(10, 30))
    three = shap_stats.shap_stability([a, b, a], k=10)
    assert three.per_class["0"] == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert set(three.per_pair) == {("0", "1"), ("0", "2"), ("1", "2")}


def test_shap_stability_rejects_bad_input():
    a = importance_with_top(2, 30, [range(10), range(10)])
    with pytest.raises(ValueError, match="at least 2"):
        shap_stats.shap_stability([a])
    with pytest.raises(ValueError, match="same"):
        shap_stats.shap_stability([a, a[:, :20]])
    with pytest.raises(ValueError, match="non-negative"):
        shap_stats.shap_stability([a, -a])


def test_cross_source_agreement_is_stability_across_sources():
    a = importance_with_top(2, 30, [range(0, 10), range(10, 20)])
    b = importance_with_top(2, 30, [range(0, 10), range(20, 30)])
    result = shap_stats.cross_source_shap_agreement({"ptbxl": a, "code15": b, "chapman": a}, k=10,
                                                    class_names=["afib", "normal"])
    assert result.per_class == {"afib": 1.0, "normal": pytest.approx(1 / 3)}
    assert result.per_pair[("ptbxl", "chapman")] == 1.0
    assert result.per_pair[("ptbxl", "code15")] == pytest.approx(0.5)


# --------------------------------------------------------------------------- structure (all together)


def test_structure_metrics_combines_the_pure_functions():
    x, y = clusters(n=200)
    groups, sources = patients_and_sources(n_patients=100)
    projection = x[:, :2]
    result = structure.structure_metrics(x, y, sources, groups, projection, k=8, seed=4)
    assert result.knn == neighbourhood.knn_label_agreement(x, y, 8, "cosine", 4)
    assert result.site == separability.site_separability(x, sources, groups, 4)
    assert result.effective_rank == pytest.approx(spectrum.effective_rank(x), rel=1e-12)
    assert result.participation_ratio == pytest.approx(spectrum.participation_ratio(x), rel=1e-12)
    assert result.alignment_uniformity == alignment.alignment_uniformity(x, y, 4)
    assert result.preservation == neighbourhood.neighbourhood_preservation(x, projection, 8, "euclidean", 4)
    summary = structure.structure_summary(result)
    assert summary["site_separability"] == result.site.auroc and summary["continuity"] == result.preservation.continuity


def test_structure_metrics_leaves_undefined_parts_empty():
    x, y = clusters(n=40)
    result = structure.structure_metrics(x, y, ["one-site"] * 40)
    assert result.site is None and result.preservation is None
    summary = structure.structure_summary(result)
    assert summary["site_separability"] is None and summary["continuity"] is None
    assert summary["projection_k"] == 0 and summary["site_cv_folds"] == 0
    with pytest.raises(ValueError, match="metric"):
        structure.structure_metrics(x, y, ["s"] * 40, metric="hamming-ish")
    with pytest.raises(ValueError, match="sources"):
        structure.structure_metrics(x, y, ["s"] * 39)
