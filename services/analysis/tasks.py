"""What the AnalysisService computes for one request: shared by its servicer and by a run's Ray tasks.

Each function takes a request's decoded contents (0 / "" meaning the default, as on the wire),
checks what the wire cannot (row counts, parameter ranges; ValueError naming the field), computes
and returns the reply's contents as the AnalysisClient hands them back: core dataclasses, plain
dicts, None for an undefined score, (name, png, caption) figures. The servicer only decodes and
encodes around these; `ecglens run` calls them inside Ray tasks after `as_sent`, the cast the
float32 wire applies, so a run and the served path give the same numbers and the same PNGs.
"""
from __future__ import annotations

import importlib
import math
import threading
from typing import Mapping, Sequence

import numpy as np

from services.analysis import core, inputs, neighbourhood, separability, similarity as cka, structure as metrics
from services.analysis import umap_selection
from services.analysis.figures import similarity_figure
from services.analysis.structure import StructureResult

# What the analyses import lazily (function-level imports keep `import services.analysis` light). Imported
# here once, under a lock, before any analysis runs: two threads importing scipy at once once failed with
# "cannot import name 'euclidean' from partially initialized module 'scipy.spatial.distance'".
PRELOADED = ("scipy.spatial.distance", "scipy.special", "scipy.stats", "scipy.sparse", "sklearn.metrics",
             "sklearn.manifold", "sklearn.neighbors", "sklearn.linear_model", "sklearn.model_selection",
             "sklearn.pipeline", "sklearn.preprocessing", "matplotlib.figure")
_PRELOAD_LOCK = threading.Lock()
_preloaded = False


def preload() -> None:
    """Import every module the analyses import lazily, once per process, before threads compute (idempotent)."""
    global _preloaded
    with _PRELOAD_LOCK:
        if _preloaded:
            return
        for name in PRELOADED:
            importlib.import_module(name)
        _preloaded = True


Figures = list[tuple[str, bytes, str]]
CkaMatrix = dict[tuple[str, str], "float | None"]


def as_sent(x: np.ndarray) -> np.ndarray:
    """x as the service sees it: cast to the wire's float32, then to the float64 the servicer computes in."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def _defined(value: float | None) -> float | None:
    """A score as it comes back from the wire: undefined (None or NaN) is None, else a Python float."""
    return None if value is None or math.isnan(value) else float(value)


def umap(x: np.ndarray, class_labels: Sequence[str], sources: Sequence[str], n_neighbors: int = 0,
         min_dist: float = 0.0, metric: str = "", seed: int = 0, title: str = "") -> tuple[core.UmapResult, Figures]:
    """2-D UMAP of x [N, D] with its scores and the by-class / by-source scatters."""
    n = x.shape[0]
    if n < core.MIN_UMAP_ROWS:
        raise ValueError(f"embeddings: UMAP needs at least {core.MIN_UMAP_ROWS} rows, got {n}")
    if x.shape[1] < 1:
        raise ValueError("embeddings: has 0 columns (D must be >= 1)")
    for name, labels in (("class_labels", class_labels), ("sources", sources)):
        if len(labels) != n:
            raise ValueError(f"{name}: has {len(labels)} entries but embeddings has {n} rows")
    labels, origins = list(class_labels), list(sources)
    result = core.umap_projection(x, labels, origins, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                                  seed=seed)
    # Captions are drawn from the scores as computed; only the reply turns NaN into None.
    figures = core.umap_figures(result, labels, origins, title or "embeddings")
    result.silhouette_class = _defined(result.silhouette_class)
    result.silhouette_source = _defined(result.silhouette_source)
    return result, figures


def umap_grid(x: np.ndarray, class_labels: Sequence[str], sources: Sequence[str], n_neighbors: Sequence[int],
              min_dist: Sequence[float], metric: str = "", seed: int = 0,
              title: str = "") -> tuple[core.UmapResult, Figures, umap_selection.UmapSelection]:
    """UMAP over a (n_neighbors x min_dist) grid, the setting with the best class silhouette in 2-D kept.

    Returns the selected projection scored as `umap` scores one, its two scatters plus the grid's
    small-multiples figure, and the whole selection. Above umap_selection.GRID_SAMPLE rows the grid is
    searched on a seeded subsample and the selected setting is then fitted on every row
    (core.fit_projection, itself capped at core.UMAP_FIT_SAMPLE). Not (yet) an AnalysisService request.
    """
    labels, origins = list(class_labels), list(sources)
    if len(origins) != x.shape[0]:
        raise ValueError(f"sources: has {len(origins)} entries but embeddings has {x.shape[0]} rows")
    metric = metric or core.DEFAULT_METRIC
    if metric not in inputs.SUPPORTED_METRICS:
        raise ValueError(f"metric: {metric!r} is not supported; use one of {', '.join(inputs.SUPPORTED_METRICS)}")
    selection = umap_selection.select_umap(x, labels, n_neighbors, min_dist, metric, seed)
    point = selection.points[selection.selected]
    if selection.sample_rows is None:
        projection, k_used, n_fit = selection.projections[selection.selected], point.n_neighbors_used, len(x)
    else:
        k_used = core.clamp_neighbors(point.n_neighbors, len(x))
        projection, n_fit = core.fit_projection(np.asarray(x, np.float32), k_used, point.min_dist, metric, seed)
    result = core.scored_projection(x, projection, labels, origins, k_used, point.min_dist, metric, seed)
    result.n_fit = n_fit
    name = title or "embeddings"
    figures = core.umap_figures(result, labels, origins, name)
    figures.append((f"umap-selection/{core.slug(name)}", umap_selection.selection_figure(selection, labels, name),
                    _selection_caption(selection, name)))
    result.silhouette_class = _defined(result.silhouette_class)
    result.silhouette_source = _defined(result.silhouette_source)
    return result, figures, selection


def _selection_caption(selection: umap_selection.UmapSelection, name: str) -> str:
    """What the small multiples show and which setting won."""
    point = selection.points[selection.selected]
    sil = "undefined" if point.silhouette is None else f"{point.silhouette:.2f}"
    return (f"UMAP of {name} at every grid setting (rows n_neighbors, columns min_dist), coloured by class; the "
            f"framed panel (n_neighbors={point.n_neighbors}, min_dist={point.min_dist:g}) has the highest class "
            f"silhouette in 2-D ({sil}) and is the one shown elsewhere. A map's look depends on these settings: "
            "read clusters across panels, not from one.")


def shap(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray, background: np.ndarray,
         samples: np.ndarray, class_names: Sequence[str], top_k: int = 0, title: str = "",
         keep_values: bool = True) -> tuple[core.ShapResult, Figures]:
    """Exact linear SHAP of a standardised probe with its top-dimension heatmap (keep_values: core.linear_shap)."""
    if top_k < 0:
        raise ValueError(f"top_k: must be >= 0 (0 = default {core.DEFAULT_TOP_K}), got {top_k}")
    names = list(class_names)
    result = core.linear_shap(coef, intercept, mean, scale, background, samples, class_names=names, top_k=top_k,
                              keep_values=keep_values)
    return result, [core.shap_figure(result, names, title or "probe")]


def _labels(values: Sequence[str], n: int, name: str) -> list[str]:
    """A label list with exactly n entries, or ValueError."""
    if len(values) != n:
        raise ValueError(f"{name}: has {len(values)} entries but embeddings has {n} rows")
    return list(values)


def structure(x: np.ndarray, class_labels: Sequence[str], sources: Sequence[str],
              groups: Sequence[str] | None = None, projection: np.ndarray | None = None, k: int = 0,
              metric: str = "", projection_metric: str = "", seed: int = 0, cv_folds: int = 0) -> StructureResult:
    """Every structure metric of x [N, D]; groups empty or None = no patient grouping, projection optional."""
    n = x.shape[0]
    if n < 4 or x.shape[1] < 1:
        raise ValueError(f"embeddings: needs at least 4 rows and 1 column, got shape {list(x.shape)}")
    if projection is not None and projection.shape[0] != n:
        raise ValueError(f"projection: has {projection.shape[0]} rows but embeddings has {n}")
    for name, value in (("k", k), ("cv_folds", cv_folds)):
        if value < 0:
            raise ValueError(f"{name}: must be >= 0 (0 = default), got {value}")
    if cv_folds == 1:
        raise ValueError("cv_folds: must be >= 2 (0 = default 5), got 1")
    return metrics.structure_metrics(
        x, _labels(class_labels, n, "class_labels"), _labels(sources, n, "sources"),
        _labels(groups, n, "groups") if groups is not None and len(groups) else None, projection,
        k=k or inputs.DEFAULT_K, metric=metric or neighbourhood.DEFAULT_KNN_METRIC,
        projection_metric=projection_metric or "euclidean", seed=seed, cv=cv_folds or separability.DEFAULT_CV_FOLDS)


def structure_summary(result: StructureResult) -> dict[str, object]:
    """A StructureResult as the flat dict AnalysisClient.structure returns (Python numbers, None = undefined)."""
    summary = metrics.structure_summary(result)
    for key in ("knn_agreement", "knn_chance", "effective_rank", "participation_ratio", "uniformity"):
        summary[key] = float(summary[key])
    for key in ("site_separability", "alignment", "trustworthiness", "continuity"):
        summary[key] = _defined(summary[key])
    for key in ("n_rows", "k", "site_cv_folds", "projection_k"):
        summary[key] = int(summary[key])
    for key in ("knn_per_class", "site_per_source"):
        summary[key] = {label: float(value) for label, value in summary[key].items()}
    return summary


def similarity(embeddings: Mapping[str, np.ndarray], title: str = "") -> tuple[CkaMatrix, Figures]:
    """Linear CKA of every ordered pair of row-aligned models (a == b included) with its heatmap."""
    if not embeddings:
        raise ValueError("models: at least one model is required")
    rows = {name: x.shape[0] for name, x in embeddings.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"models: embeddings must have the same rows (aligned records); got row counts {rows}")
    if next(iter(rows.values())) < 2:
        raise ValueError("models: embeddings need at least 2 rows")
    matrix = cka.cka_matrix(embeddings)
    figure = similarity_figure(list(embeddings), matrix, title)
    return {pair: _defined(value) for pair, value in matrix.items()}, [figure]
