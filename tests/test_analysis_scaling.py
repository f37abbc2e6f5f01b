"""The caps that keep the analyses linear at 100k ECGs: deterministic, close to the full computation, reported.

Caps are lowered with monkeypatch so the full and the capped computation both fit in a unit test.
"""
from __future__ import annotations

import numpy as np
import pytest

from services.analysis import alignment, core, neighbourhood, sampling, tasks, umap_selection
from services.analysis.inputs import subsample


def blobs(n: int, dim: int = 12, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """Well separated Gaussian classes in dim dims, two sources."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(classes, dim))[y] * 4 + rng.normal(size=(n, dim))
    return x.astype(np.float32), [f"c{v}" for v in y], [f"s{v % 2}" for v in rng.integers(0, 2, n)]


# --------------------------------------------------------------------------- UMAP fit cap


def test_capped_umap_fit_is_deterministic_and_keeps_the_fitted_rows():
    x, _, _ = blobs(400)
    a, n_fit = core.fit_projection(x, 10, 0.1, "euclidean", seed=3, max_fit=150)
    b, _ = core.fit_projection(x, 10, 0.1, "euclidean", seed=3, max_fit=150)
    assert n_fit == 150 and a.shape == (400, 2) and a.dtype == np.float32
    assert np.array_equal(a, b)  # same seed, same rows, same transform seed: bit for bit
    rows = subsample(400, 150, 3)
    assert np.array_equal(a[rows], core._fit_umap(x[rows], 10, 0.1, "euclidean", 3))
    full, n_all = core.fit_projection(x, 10, 0.1, "euclidean", seed=3, max_fit=400)
    assert n_all == 400 and np.array_equal(full, core._fit_umap(x, 10, 0.1, "euclidean", 3))


def test_capped_umap_scores_approximate_the_full_fit():
    """Tolerance: trustworthiness within 0.05 and 2-D class silhouette within 0.15 of the full fit."""
    x, labels, _ = blobs(1200, seed=1)
    capped, _ = core.fit_projection(x, 15, 0.1, "euclidean", seed=0, max_fit=400)
    full, _ = core.fit_projection(x, 15, 0.1, "euclidean", seed=0, max_fit=1200)
    t_capped = core._trustworthiness(x, capped, 15, "euclidean", 0)
    t_full = core._trustworthiness(x, full, 15, "euclidean", 0)
    assert abs(t_capped - t_full) < 0.05
    s_capped = umap_selection.projection_silhouette(capped, labels, 0)
    s_full = umap_selection.projection_silhouette(full, labels, 0)
    assert abs(s_capped - s_full) < 0.15 and s_capped > 0.5


def test_umap_projection_records_the_rows_it_was_fitted_on(monkeypatch):
    x, labels, sources = blobs(300)
    monkeypatch.setattr(core, "UMAP_FIT_SAMPLE", 120)
    result, _ = tasks.umap(x, labels, sources, n_neighbors=10, seed=2)
    assert result.n_fit == 120 and result.projection.shape == (300, 2)
    monkeypatch.setattr(core, "UMAP_FIT_SAMPLE", 20_000)
    assert tasks.umap(x, labels, sources, n_neighbors=10, seed=2)[0].n_fit == 300


# --------------------------------------------------------------------------- UMAP grid cap


def test_grid_search_runs_on_a_seeded_subsample_and_the_choice_is_fitted_on_every_row(monkeypatch):
    x, labels, sources = blobs(260)
    monkeypatch.setattr(umap_selection, "GRID_SAMPLE", 100)
    a = umap_selection.select_umap(x, labels, [5, 10], [0.1, 0.5], seed=4)
    b = umap_selection.select_umap(x, labels, [5, 10], [0.1, 0.5], seed=4)
    assert np.array_equal(a.sample_rows, subsample(260, 100, 4)) and a.n_rows == 100
    assert all(p.shape == (100, 2) for p in a.projections)
    assert all(np.array_equal(p, q) for p, q in zip(a.projections, b.projections)) and a.selected == b.selected
    assert [p.silhouette for p in a.points] == [p.silhouette for p in b.points]
    # Every point is scored on the subsample's own labels.
    sub_labels = [labels[i] for i in a.sample_rows]
    for point, proj in zip(a.points, a.projections):
        assert point.silhouette == umap_selection.projection_silhouette(proj, sub_labels, 4)
    assert umap_selection.selection_figure(a, labels, "t")[:4] == b"\x89PNG"
    result, figures, selection = tasks.umap_grid(x, labels, sources, [5, 10], [0.1, 0.5], seed=4)
    chosen = selection.points[selection.selected]
    assert result.projection.shape == (260, 2) and result.n_fit == 260
    assert np.array_equal(result.projection, core._fit_umap(x, chosen.n_neighbors, chosen.min_dist, "euclidean", 4))
    assert len(figures) == 3


def test_small_grids_use_every_row_as_before():
    x, labels, sources = blobs(80)
    selection = umap_selection.select_umap(x, labels, [5], [0.1, 0.5], seed=0)
    assert selection.sample_rows is None and selection.n_rows == 80
    result, _, _ = tasks.umap_grid(x, labels, sources, [5], [0.1, 0.5], seed=0)
    assert np.array_equal(result.projection, selection.projections[selection.selected])


# --------------------------------------------------------------------------- SHAP in chunks


def _probe(d: int, c: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"coef": rng.normal(size=(c, d)), "intercept": rng.normal(size=c), "mean": rng.normal(size=d),
            "scale": rng.uniform(0.5, 2.0, d)}


def test_chunked_linear_shap_equals_one_pass(monkeypatch):
    x, _, _ = blobs(301, dim=9)
    p, names = _probe(9, 3), ["a", "b", "c"]
    one = core.linear_shap(background=x[:100], samples=x[100:], class_names=names, **p)
    monkeypatch.setattr(core, "SHAP_CHUNK_ROWS", 7)
    chunked = core.linear_shap(background=x[:100], samples=x[100:], class_names=names, **p)
    lean = core.linear_shap(background=x[:100], samples=x[100:], class_names=names, keep_values=False, **p)
    assert np.array_equal(chunked.shap_values, one.shap_values)  # each row's values do not depend on its chunk
    np.testing.assert_allclose(chunked.mean_abs, one.mean_abs, rtol=1e-6)  # float32 of sums in another order
    assert chunked.max_additivity_error == pytest.approx(one.max_additivity_error, abs=1e-12)
    assert {c: [d for d, _ in v] for c, v in chunked.top_dims.items()} == {c: [d for d, _ in v]
                                                                          for c, v in one.top_dims.items()}
    assert chunked.dims_for_90pct == one.dims_for_90pct
    assert lean.shap_values.shape == (3, 0, 9) and np.array_equal(lean.mean_abs, chunked.mean_abs)
    # The closed form of exact linear SHAP: |w_eff[c, d]| * mean |x[n, d] - E_bg[x_d]|.
    w_eff, _ = core.effective_linear_model(p["coef"], p["intercept"], p["mean"], p["scale"])
    x64 = x.astype(np.float64)
    oracle = np.abs(w_eff) * np.abs(x64[100:] - x64[:100].mean(axis=0)).mean(axis=0)
    np.testing.assert_allclose(lean.mean_abs, oracle, rtol=1e-5)


# --------------------------------------------------------------------------- what results.json says


def test_sampling_counts_match_what_the_metrics_used(monkeypatch):
    x, labels, _ = blobs(90)
    monkeypatch.setattr(alignment, "MAX_PAIRS", 500)
    monkeypatch.setattr(neighbourhood, "KNN_QUERY_SAMPLE", 40)
    monkeypatch.setattr(neighbourhood, "PRESERVATION_SAMPLE", 30)
    au = alignment.alignment_uniformity(x, labels, max_pairs=alignment.MAX_PAIRS)
    used = sampling.structure_rows(labels, projection=True)
    assert used["uniformity_pairs"] == au.uniformity_pairs == 500
    assert used["alignment_pairs"] == au.alignment_pairs
    pres = neighbourhood.neighbourhood_preservation(x, x[:, :2], k=5)
    assert used["continuity"] == pres.n_rows == 30 and used["knn_queries"] == 40
    assert "continuity" not in sampling.structure_rows(labels, projection=False)
    few = sampling.structure_rows(labels[:20], projection=False)
    assert few["uniformity_pairs"] == 190 and few["knn_queries"] == 20
    assert sampling.umap_rows(100_000, grid=True) == {"fit": core.UMAP_FIT_SAMPLE, "silhouette": core.SILHOUETTE_SAMPLE,
                                                      "trustworthiness": core.TRUSTWORTHINESS_SAMPLE,
                                                      "grid": umap_selection.GRID_SAMPLE}
    assert sampling.umap_rows(500, grid=False) == {"fit": 500, "silhouette": 500, "trustworthiness": 500}
    assert sampling.selection_rows(50_000) == {"grid": umap_selection.GRID_SAMPLE, "silhouette": core.SILHOUETTE_SAMPLE}


def test_the_report_says_when_an_estimate_was_sampled():
    from orchestrator.report.representation import _selection_rows, _umap_sampling

    u = {"subsample": sampling.umap_rows(100_000, grid=True)}
    note = _umap_sampling(u, 100_000)
    assert "fitted on 20,000 of 100,000 ECGs" in note and "grid searched on 2,000 of 100,000 ECGs" in note
    assert "silhouettes on 2,000" in note and "trustworthiness on 5,000" in note
    assert _umap_sampling({"subsample": sampling.umap_rows(900, grid=True)}, 900) == ""
    assert _umap_sampling({}, 100_000) == ""  # a 1.3 file: nothing claimed either way
    row = _selection_rows("d", "full embedding", {"grid": [{"n_neighbors": 15, "min_dist": 0.1, "silhouette": 0.4}],
                                                  "selected": {}, "subsample": {"grid": 2000}}, 100_000)
    assert "searched on 2,000 of 100,000 ECGs" in row[0][2]
