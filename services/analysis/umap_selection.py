"""UMAP as the seed paper does it: a grid of (n_neighbors, min_dist), the setting chosen by silhouette.

Every grid point is one deterministic UMAP (core._fit_umap, the seed's random_state) of the same
rows; its score is the silhouette of the class labels in the 2-D projection (Euclidean, the space
the map is read in; a deterministic subsample of SILHOUETTE_SAMPLE rows above that size). The
selected point has the highest silhouette; ties and undefined scores go to the earlier grid point
(n_neighbors outer, min_dist inner, as given). Above GRID_SAMPLE rows the whole grid is fitted and
scored on one seeded subsample of GRID_SAMPLE rows (inputs.subsample: sorted, deterministic), as the seed
paper caps its grid search: a grid of G settings would otherwise cost G full-size UMAP fits. The
selection records those rows (`sample_rows`, None when all were used); the setting it picks is then fitted once
on every row (core.fit_projection) for the figures and scores. Unlike the single-setting path (core.resolve_umap_params,
where 0 means the default), min_dist 0 here is 0. n_neighbors is clamped to N - 1 for small N; the
grid keeps the value given and records the one used.

`top_dims` picks the k dimensions a probe relies on most (mean |SHAP| over classes), on which the
seed runs its UMAP (standardised: the columns are z-scored over the analysed rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.analysis import core
from services.common.figures import figure_png

DEFAULT_GRID = {"n_neighbors": (15, 30), "min_dist": (0.1, 0.5)}  # small: the demo runs it for every model
SEED_GRID = {"n_neighbors": (15, 30, 50, 80, 100), "min_dist": (0.0, 0.1, 0.3, 0.5)}  # the seed paper's
DEFAULT_TOP_K = 50
GRID_SAMPLE = 2_000  # rows every grid point is fitted and scored on (a seeded subsample above this)


@dataclass
class GridPoint:
    """One UMAP setting of the grid and its class silhouette in the projection (None: undefined)."""

    n_neighbors: int
    min_dist: float
    silhouette: float | None
    n_neighbors_used: int  # n_neighbors clamped to N - 1


@dataclass
class UmapSelection:
    """Every grid point, which one was selected, and each point's projection [n, 2] of the grid's rows."""

    points: list[GridPoint]
    selected: int
    projections: list[np.ndarray]
    sample_rows: np.ndarray | None = None  # the input rows the grid was fitted on (sorted); None = all of them

    @property
    def n_rows(self) -> int:
        """Rows every grid point was fitted and scored on."""
        return len(self.projections[0]) if self.sample_rows is None else len(self.sample_rows)

    def rows(self) -> list[dict]:
        """The grid as results.json rows: n_neighbors, min_dist, silhouette."""
        return [{"n_neighbors": p.n_neighbors, "min_dist": p.min_dist, "silhouette": p.silhouette}
                for p in self.points]


def check_grid(n_neighbors: Sequence[int], min_dist: Sequence[float]) -> list[tuple[int, float]]:
    """The grid's points, n_neighbors outer; ValueError naming a bad value."""
    if not n_neighbors or not min_dist:
        raise ValueError("grid: needs at least one n_neighbors and one min_dist")
    for k in n_neighbors:
        if isinstance(k, bool) or int(k) != k or k < 2:
            raise ValueError(f"grid.n_neighbors: every value must be an integer >= 2, got {k!r}")
    for d in min_dist:
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not math.isfinite(d) or not 0 <= d <= 1:
            raise ValueError(f"grid.min_dist: every value must be in [0, 1], got {d!r}")
    return [(int(k), float(d)) for k in n_neighbors for d in min_dist]


def projection_silhouette(projection: np.ndarray, labels: Sequence[str], seed: int) -> float | None:
    """Euclidean silhouette of labels in a 2-D projection; None where undefined (one label, or one per row)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels, dtype=object)
    n_labels = len(set(labels.tolist()))
    if n_labels < 2 or n_labels > len(labels) - 1:
        return None
    sample = ({"sample_size": core.SILHOUETTE_SAMPLE, "random_state": int(seed) % 2**32}
              if len(labels) > core.SILHOUETTE_SAMPLE else {})
    try:
        return float(silhouette_score(np.asarray(projection, np.float64), labels, metric="euclidean", **sample))
    except ValueError:  # a subsample that happened to hold a single label
        return None


def best_point(scores: Sequence[float | None]) -> int:
    """Index of the highest score; ties and None go to the earlier point (0 when none is defined)."""
    best = 0
    for i, score in enumerate(scores):
        if score is not None and (scores[best] is None or score > scores[best]):
            best = i
    return best


def select_umap(x: np.ndarray, class_labels: Sequence[str], n_neighbors: Sequence[int], min_dist: Sequence[float],
                metric: str = core.DEFAULT_METRIC, seed: int = 0, max_rows: int | None = None) -> UmapSelection:
    """One UMAP per grid point on x [N, D] (seeded subsample above max_rows, None: GRID_SAMPLE): best silhouette."""
    from services.analysis.inputs import subsample

    points = check_grid(n_neighbors, min_dist)
    x = core._as_matrix(x, "embeddings").astype(np.float32, copy=False)
    if len(x) < core.MIN_UMAP_ROWS:
        raise ValueError(f"embeddings: UMAP needs at least {core.MIN_UMAP_ROWS} rows, got {len(x)}")
    if len(class_labels) != len(x):
        raise ValueError(f"class_labels: has {len(class_labels)} entries but embeddings has {len(x)} rows")
    rows, max_rows = None, GRID_SAMPLE if max_rows is None else max_rows
    if len(x) > max_rows:
        rows = subsample(len(x), max_rows, seed)
        x, class_labels = x[rows], [class_labels[i] for i in rows]
    used = {(k, d): (core.clamp_neighbors(k, len(x)), d) for k, d in points}
    fitted: dict[tuple[int, float], np.ndarray] = {}
    for k_used, d in dict.fromkeys(used.values()):  # clamping can make two points the same UMAP
        fitted[(k_used, d)] = core._fit_umap(x, k_used, d, metric, seed)
    projections = [fitted[used[p]] for p in points]
    grid = [GridPoint(k, d, projection_silhouette(proj, class_labels, seed), used[(k, d)][0])
            for (k, d), proj in zip(points, projections)]
    return UmapSelection(grid, best_point([p.silhouette for p in grid]), projections, rows)


def top_dims(mean_abs: np.ndarray, k: int) -> list[int]:
    """The k dimensions with the largest mean |SHAP| averaged over classes (ties: lower index), ascending."""
    overall = np.asarray(mean_abs, np.float64).reshape(-1, np.shape(mean_abs)[-1]).mean(axis=0)
    order = np.lexsort((np.arange(len(overall)), -overall))[:max(1, min(k, len(overall)))]
    return sorted(int(d) for d in order)


def standardise_columns(x: np.ndarray) -> np.ndarray:
    """Columns z-scored over the rows (constant columns left at 0)."""
    x = np.asarray(x, np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def selection_figure(selection: UmapSelection, class_labels: Sequence[str], title: str) -> bytes:
    """Small multiples of the grid: one UMAP panel per setting, coloured by class, the selected one framed."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ks = list(dict.fromkeys(p.n_neighbors for p in selection.points))
    ds = list(dict.fromkeys(p.min_dist for p in selection.points))
    labels = np.asarray([str(v) for v in class_labels], dtype=object)
    groups = sorted(set(labels.tolist()))  # every class of the input keeps its colour, sampled or not
    if selection.sample_rows is not None:
        labels = labels[selection.sample_rows]
    colour = dict(zip(groups, core._palette(len(groups))))
    fig = Figure(figsize=(2.3 * len(ds) + 1.6, 2.2 * len(ks) + 0.5), layout="constrained")
    size = float(np.clip(1500 / max(len(labels), 1), 2, 12))
    for i, point in enumerate(selection.points):
        ax = fig.add_subplot(len(ks), len(ds), ks.index(point.n_neighbors) * len(ds) + ds.index(point.min_dist) + 1)
        proj = selection.projections[i]
        for g in groups:
            rows = labels == g
            ax.scatter(proj[rows, 0], proj[rows, 1], s=size, alpha=0.7, linewidths=0, color=colour[g])
        sil = "undefined" if point.silhouette is None else f"{point.silhouette:.2f}"
        chosen = i == selection.selected
        ax.set_title(f"nn={point.n_neighbors}, md={point.min_dist:g}\nsilhouette {sil}"
                     + (" (chosen)" if chosen else ""), fontsize=7, fontweight="bold" if chosen else "normal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_linewidth(2.5 if chosen else 0.6)
            spine.set_color("#d62728" if chosen else "#888888")
    handles = [Line2D([], [], marker="o", linestyle="", color=colour[g], label=g) for g in groups]
    fig.legend(handles=handles, title="class", loc="outside right center", fontsize=7, title_fontsize=8,
               frameon=False)
    fig.suptitle(f"{title}: UMAP grid, chosen by class silhouette", fontsize=10)
    return figure_png(fig)
