"""UMAP as the seed paper does it: a (n_neighbors x min_dist) grid chosen by class silhouette, top-k SHAP dims."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from orchestrator.experiment import ConfigError, parse_experiment
from orchestrator.stages.analysis_tasks import grid_points, umap_task, umap_top_task
from orchestrator.stages.probe_shap import tree_shap
from services.analysis.umap_selection import best_point, check_grid, select_umap, top_dims

PARAMS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", "seed": 0,
          "grid": {"n_neighbors": [5, 20], "min_dist": [0.0, 0.5]}, "shap_top_k": 4}


def clusters(n: int = 90, d: int = 10, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three separated Gaussian clusters and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.normal(size=(3, d))[y] * 3 + rng.normal(size=(n, d)), [f"c{k}" for k in y]


def test_selection_picks_the_grid_point_with_the_highest_projection_silhouette():
    x, labels = clusters()
    selection = select_umap(x, labels, [5, 20], [0.0, 0.5], seed=0)
    assert [(p.n_neighbors, p.min_dist) for p in selection.points] == [(5, 0.0), (5, 0.5), (20, 0.0), (20, 0.5)]
    # Definition oracle: each score is sklearn's Euclidean silhouette of the labels in that point's projection.
    for point, projection in zip(selection.points, selection.projections):
        assert point.silhouette == pytest.approx(silhouette_score(projection, labels), abs=1e-6)
    scores = [p.silhouette for p in selection.points]
    assert selection.selected == int(np.argmax(scores))
    assert len({p.silhouette for p in selection.points}) > 1  # the grid's settings really differ


def test_best_point_breaks_ties_and_undefined_scores_towards_the_earlier_point():
    assert best_point([0.2, 0.5, 0.5, None]) == 1
    assert best_point([None, 0.1, 0.3]) == 2
    assert best_point([None, None]) == 0


def test_grid_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="n_neighbors: every value must be an integer >= 2, got 1"):
        check_grid([1], [0.1])
    with pytest.raises(ValueError, match="min_dist: every value must be in \\[0, 1\\], got 1.5"):
        check_grid([15], [1.5])


def test_umap_task_reports_the_grid_and_its_selection_and_draws_small_multiples():
    x, labels = clusters()
    scores, figures, projection = umap_task(x, labels, ["a"] * 45 + ["b"] * 45, PARAMS, "m")
    assert [(g["n_neighbors"], g["min_dist"]) for g in scores["grid"]] == [(5, 0.0), (5, 0.5), (20, 0.0), (20, 0.5)]
    best = max(scores["grid"], key=lambda g: g["silhouette"])
    assert scores["selected"] == best
    assert (scores["n_neighbors"], scores["min_dist"]) == (best["n_neighbors"], best["min_dist"])
    assert [name for name, _, _ in figures] == ["umap/m/class", "umap/m/source", "umap-selection/m"]
    assert figures[-1][1].startswith(b"\x89PNG") and projection.shape == (90, 2)


def test_umap_without_a_grid_keeps_the_single_setting_and_writes_no_grid():
    params = {**PARAMS, "grid": {"n_neighbors": [], "min_dist": []}}
    assert grid_points(params) is None
    x, labels = clusters(40)
    scores, figures, _ = umap_task(x, labels, ["a"] * 40, params, "m")
    assert "grid" not in scores and scores["n_neighbors"] == 15 and len(figures) == 2


def test_top_shap_umap_runs_on_the_k_most_important_dimensions():
    x, labels = clusters(d=12)
    mean_abs = np.zeros((3, 12))
    mean_abs[:, [2, 7, 9, 11]] = [[1.0], [2.0], [3.0]]
    mean_abs[0, 5] = 0.5  # sixth by importance: left out at k=4
    assert top_dims(mean_abs, 4) == [2, 7, 9, 11]
    summary, figures = umap_top_task(x, np.arange(90), mean_abs, labels, PARAMS, "m")
    assert summary["k"] == 4 and summary["dims"] == [2, 7, 9, 11]
    assert summary["selected"] == max(summary["grid"], key=lambda g: g["silhouette"])
    assert figures[0][0] == "umap-selection/m/top-shap"


def test_experiment_validates_the_umap_grid_and_top_k():
    base = {"datasets": [{"kind": "synthetic", "sites": ["eu"], "records_per_site": 20}], "models": ["handcrafted"]}
    full = {"n_neighbors": [15, 30, 50, 80, 100], "min_dist": [0, 0.1, 0.3, 0.5]}
    exp = parse_experiment({**base, "analyses": {"umap": {"grid": full}}})
    assert exp.analyses["umap"]["grid"] == {"n_neighbors": [15, 30, 50, 80, 100], "min_dist": [0.0, 0.1, 0.3, 0.5]}
    assert exp.analyses["umap"]["shap_top_k"] == 50
    with pytest.raises(ConfigError, match="analyses.umap.grid.n_neighbors: 1 is outside 2..10000"):
        parse_experiment({**base, "analyses": {"umap": {"grid": {"n_neighbors": [1]}}}})
    with pytest.raises(ConfigError, match="analyses.umap.shap_top_k: expected an integer >= 0"):
        parse_experiment({**base, "analyses": {"umap": {"shap_top_k": -1}}})


def test_tree_shap_finds_the_one_dimension_that_carries_the_label():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(160, 8)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 5] > 0).astype(int)]
    for kind in ("random_forest", "gradient_boosting", "decision_tree"):
        summary = tree_shap(kind, x[:120], y[:120], x[120:], ["neg", "pos"], False, seed=0, cv_folds=3, top_k=3)
        assert summary["explainer"] == "tree" and summary["n_samples"] == 40
        assert summary["top_dims"]["pos"][0] == 5 and summary["top_dims"]["neg"][0] == 5, (kind, summary)
