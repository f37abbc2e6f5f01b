"""What embeddings encode: UMAP projections with structure scores, exact linear SHAP, figures.

Pure numpy/scikit-learn/umap/shap/matplotlib code, importable without gRPC. Heavy libraries
(umap, shap) are imported inside the functions that need them so that importing this module
stays cheap for callers that only want the dataclasses.
"""
from __future__ import annotations

import math
import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from services.analysis.inputs import SUPPORTED_METRICS
from services.analysis.shap_stats import shap_concentration
from services.common.figures import figure_png

DEFAULT_N_NEIGHBORS = 15
DEFAULT_MIN_DIST = 0.1
DEFAULT_METRIC = "euclidean"
DEFAULT_TOP_K = 10
MIN_UMAP_ROWS = 5
# Silhouette and trustworthiness need all pairwise distances (O(N^2) memory); above these
# sizes both are estimated on a deterministic subsample.
SILHOUETTE_SAMPLE = 2000
TRUSTWORTHINESS_SAMPLE = 5000
# UMAP is fitted on at most this many rows (a seeded subsample); the other rows are placed by
# umap's transform against that fit. A fit's kNN graph and layout grow super-linearly in time and
# memory with N; transform is linear. Every row still gets a projection, so figures, scores and the
# cross-model grids see all of them; `UmapResult.n_fit` says how many the map was learnt from.
UMAP_FIT_SAMPLE = 20_000
# Linear SHAP explains this many samples at a time (bounds its [C, rows, D] working arrays).
SHAP_CHUNK_ROWS = 2048
# Heatmap columns beyond this stop being readable.
MAX_HEATMAP_DIMS = 30


@dataclass
class UmapResult:
    """A 2-D UMAP projection with its structure scores and the parameters actually used."""

    projection: np.ndarray  # [N, 2] float32
    silhouette_class: float | None  # None: fewer than 2 (or N) distinct labels, score undefined
    silhouette_source: float | None
    trustworthiness: float
    n_neighbors: int
    min_dist: float
    metric: str
    seed: int
    n_fit: int = 0  # rows the UMAP was fitted on (the others transformed onto it); 0 = not recorded


@dataclass
class ShapResult:
    """Exact linear SHAP values of a probe with concentration summaries."""

    shap_values: np.ndarray  # [C, N, D] float32
    base_values: np.ndarray  # [C] expected logit over the background
    dims_for_90pct: int
    top_dims: dict[str, list[tuple[int, float]]]
    max_additivity_error: float
    mean_abs: np.ndarray = field(repr=False)  # [C, D] mean |SHAP| over samples
    # Added with the concentration summaries (shap_stats.shap_concentration); defaults keep old callers valid.
    dims_for_50pct: int = 0
    gini: float = 0.0  # Gini of each class's mean |SHAP| over dims, averaged over classes


# --------------------------------------------------------------------------- UMAP


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """A finite 2-D float array or ValueError naming the field."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [N, D] array, got shape {list(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or Inf)")
    return arr


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    """Cosine silhouette of labels in the embedding space; None where it is undefined."""
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels > len(labels) - 1:
        return None
    sample = {"sample_size": SILHOUETTE_SAMPLE, "random_state": seed} if len(labels) > SILHOUETTE_SAMPLE else {}
    try:
        return float(silhouette_score(x, labels, metric="cosine", **sample))
    except ValueError:  # a subsample that happened to hold a single label
        return None


def _trustworthiness(x: np.ndarray, projection: np.ndarray, n_neighbors: int, metric: str, seed: int) -> float:
    """sklearn trustworthiness with k < N/2, on a deterministic subsample for large N."""
    from sklearn.manifold import trustworthiness

    if len(x) > TRUSTWORTHINESS_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), TRUSTWORTHINESS_SAMPLE, replace=False))
        x, projection = x[rows], projection[rows]
    k = max(1, min(n_neighbors, len(x) // 2 - 1))
    return float(trustworthiness(x, projection, n_neighbors=k, metric=metric))


def clamp_neighbors(n_neighbors: int, n_rows: int) -> int:
    """n_neighbors as UMAP can use it on n_rows rows: at least 2, at most N - 1."""
    return max(2, min(n_neighbors, n_rows - 1))


def resolve_umap_params(n_rows: int, n_neighbors: int, min_dist: float, metric: str) -> tuple[int, float, str]:
    """Apply defaults (0/"" = default), clamp n_neighbors to N-1 and validate; ValueError otherwise."""
    if n_neighbors < 0:
        raise ValueError(f"n_neighbors: must be >= 0 (0 = default {DEFAULT_N_NEIGHBORS}), got {n_neighbors}")
    if not math.isfinite(min_dist) or min_dist < 0 or min_dist > 1:
        raise ValueError(f"min_dist: must be in [0, 1] (0 = default {DEFAULT_MIN_DIST}), got {min_dist}")
    metric = metric or DEFAULT_METRIC
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"metric: {metric!r} is not supported; use one of {', '.join(SUPPORTED_METRICS)}")
    k = clamp_neighbors(n_neighbors or DEFAULT_N_NEIGHBORS, n_rows)
    return k, (min_dist or DEFAULT_MIN_DIST), metric


def umap_projection(x: np.ndarray, class_labels: Sequence[str], sources: Sequence[str],
                    n_neighbors: int = DEFAULT_N_NEIGHBORS, min_dist: float = DEFAULT_MIN_DIST,
                    metric: str = DEFAULT_METRIC, seed: int = 0) -> UmapResult:
    """Deterministic 2-D UMAP of x [N, D] with class/source silhouettes and trustworthiness."""
    x = _as_matrix(x, "embeddings").astype(np.float32, copy=False)
    n = len(x)
    if n < MIN_UMAP_ROWS:
        raise ValueError(f"embeddings: UMAP needs at least {MIN_UMAP_ROWS} rows, got {n}")
    for name, labels in (("class_labels", class_labels), ("sources", sources)):
        if len(labels) != n:
            raise ValueError(f"{name}: has {len(labels)} entries but embeddings has {n} rows")
    k, min_dist, metric = resolve_umap_params(n, n_neighbors, min_dist, metric)
    projection, n_fit = fit_projection(x, k, min_dist, metric, seed)
    result = scored_projection(x, projection, class_labels, sources, k, min_dist, metric, seed)
    result.n_fit = n_fit
    return result


def scored_projection(x: np.ndarray, projection: np.ndarray, class_labels: Sequence[str], sources: Sequence[str],
                      k: int, min_dist: float, metric: str, seed: int) -> UmapResult:
    """A projection of x made with these settings, with its silhouettes (embedding space) and trustworthiness."""
    x = np.asarray(x, dtype=np.float32)
    classes = np.asarray(class_labels, dtype=object)
    origins = np.asarray(sources, dtype=object)
    return UmapResult(
        projection=projection,
        silhouette_class=_silhouette(x, classes, seed),
        silhouette_source=_silhouette(x, origins, seed),
        trustworthiness=_trustworthiness(x, projection, k, metric, seed),
        n_neighbors=k, min_dist=float(min_dist), metric=metric, seed=int(seed))


_JIT_CACHE_LOCK = threading.Lock()
_jit_cache_enabled = False


def _enable_umap_jit_cache() -> None:
    """Turn on numba's on-disk cache for umap-learn's own kernels (once per process)."""
    global _jit_cache_enabled
    import umap.distances
    import umap.layouts
    import umap.umap_
    import umap.utils

    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # numba internals moved: correctness is unaffected, only start-up time
        return
    # umap-learn 0.5 compiles fast_knn_indices, smooth_knn_dist, ... without cache=True, so
    # every new process (each test run, each server start) paid ~11 s of JIT before its first
    # projection. Kernels numba cannot cache fall back to compiling, with a warning only.
    with _JIT_CACHE_LOCK:
        if _jit_cache_enabled:
            return
        for module in (umap.umap_, umap.utils, umap.layouts, umap.distances):
            for kernel in vars(module).values():
                if isinstance(kernel, Dispatcher) and isinstance(kernel._cache, NullCache):
                    kernel.enable_caching()
        _jit_cache_enabled = True


def _reducer(n_neighbors: int, min_dist: float, metric: str, seed: int):
    """A 2-D umap.UMAP with a fixed random_state (single-threaded, hence reproducible)."""
    import umap

    _enable_umap_jit_cache()
    # Seeds above 2**32-1 are rejected by numpy's legacy RandomState used inside umap.
    return umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                     random_state=int(seed) % (2**32), n_jobs=1)


def _fit_umap(x: np.ndarray, n_neighbors: int, min_dist: float, metric: str, seed: int) -> np.ndarray:
    """umap.UMAP fit_transform of every row with a fixed random_state (single-threaded, hence reproducible)."""
    reducer = _reducer(n_neighbors, min_dist, metric, seed)
    with warnings.catch_warnings():
        # Small N makes umap warn about spectral init / graph size; the result is still valid.
        warnings.simplefilter("ignore")
        projection = reducer.fit_transform(x)
    return np.ascontiguousarray(projection, dtype=np.float32)


def fit_projection(x: np.ndarray, n_neighbors: int, min_dist: float, metric: str, seed: int,
                   max_fit: int | None = None) -> tuple[np.ndarray, int]:
    """(projection [N, 2], rows fitted): UMAP on every row up to max_fit (None: UMAP_FIT_SAMPLE), else capped.

    Above max_fit the fit rows are `inputs.subsample(N, max_fit, seed)` (sorted, deterministic) and keep
    their fitted coordinates; every other row is placed by umap's transform (its own fixed transform_seed),
    so the result is deterministic for a seed and has one row per input row.
    """
    from services.analysis.inputs import subsample

    n, max_fit = len(x), UMAP_FIT_SAMPLE if max_fit is None else max_fit
    if n <= max_fit:
        return _fit_umap(x, n_neighbors, min_dist, metric, seed), n
    rows = subsample(n, max_fit, seed)
    rest = np.setdiff1d(np.arange(n), rows, assume_unique=True)
    reducer = _reducer(n_neighbors, min_dist, metric, seed)
    projection = np.empty((n, 2), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        projection[rows] = reducer.fit_transform(x[rows])
        projection[rest] = reducer.transform(x[rest])
    return projection, len(rows)


# --------------------------------------------------------------------------- SHAP


def probe_logits(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 x: np.ndarray) -> np.ndarray:
    """Probe logits [N, C] = ((x - mean) / scale) @ coef.T + intercept, in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    return ((x64 - mean) / scale) @ np.asarray(coef, np.float64).T + np.asarray(intercept, np.float64)


def effective_linear_model(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray,
                           scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold the standardisation into the probe: logit = x @ W_eff.T + b_eff on raw embeddings."""
    coef64 = np.asarray(coef, np.float64)
    scale64 = np.asarray(scale, np.float64)
    w_eff = coef64 / scale64
    b_eff = np.asarray(intercept, np.float64) - (np.asarray(mean, np.float64) / scale64) @ coef64.T
    return w_eff, b_eff


def _validate_probe(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                    background: np.ndarray, samples: np.ndarray, class_names: Sequence[str]) -> None:
    """Shape, finiteness and naming checks of a linear probe and its data; ValueError naming the field."""
    if coef.ndim != 2:
        raise ValueError(f"model.coef: expected [C, D], got shape {list(coef.shape)}")
    c, d = coef.shape
    if c == 0 or d == 0:
        raise ValueError(f"model.coef: needs at least one class and one dimension, got shape {[c, d]}")
    expected = {"model.intercept": (intercept, (c,)), "model.mean": (mean, (d,)), "model.scale": (scale, (d,))}
    for name, (arr, shape) in expected.items():
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {list(shape)} to match model.coef {[c, d]}, "
                             f"got {list(arr.shape)}")
    for name, arr in (("background", background), ("samples", samples)):
        if arr.ndim != 2 or arr.shape[1] != d:
            raise ValueError(f"{name}: expected [N, {d}] (D of model.coef), got shape {list(arr.shape)}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name}: has no rows")
    for name, arr in (("model.coef", coef), ("model.intercept", intercept), ("model.mean", mean),
                      ("model.scale", scale), ("background", background), ("samples", samples)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains {int(np.count_nonzero(~np.isfinite(arr)))} non-finite value(s)")
    if np.any(scale == 0):
        raise ValueError(f"model.scale: {int(np.count_nonzero(scale == 0))} zero entries (division by zero)")
    if len(class_names) != c:
        raise ValueError(f"class_names: has {len(class_names)} names but model.coef has {c} classes")
    if len(set(class_names)) != len(class_names):
        raise ValueError("class_names: names must be unique")


def _top_dims(mean_abs: np.ndarray, class_names: Sequence[str], top_k: int) -> dict[str, list[tuple[int, float]]]:
    """Per class, the top_k dims by decreasing mean |SHAP| (ties broken by lower index)."""
    top: dict[str, list[tuple[int, float]]] = {}
    for name, row in zip(class_names, mean_abs):
        order = np.lexsort((np.arange(len(row)), -row))[:top_k]
        top[name] = [(int(i), float(row[i])) for i in order]
    return top


def linear_shap(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                background: np.ndarray, samples: np.ndarray, class_names: Sequence[str],
                top_k: int = DEFAULT_TOP_K, keep_values: bool = True) -> ShapResult:
    """Exact interventional SHAP of a standardised linear probe over raw embedding dimensions.

    Every sample is explained, SHAP_CHUNK_ROWS at a time, so memory stays bounded at any N; with
    keep_values=False `shap_values` is empty ([C, 0, D]) and only the summaries are returned.
    """
    with warnings.catch_warnings():
        # shap's import touches deprecated matplotlib colormap setters; nothing to act on here.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    coef, intercept, mean, scale, background, samples = (
        np.asarray(a, np.float64) for a in (coef, intercept, mean, scale, background, samples))
    _validate_probe(coef, intercept, mean, scale, background, samples, list(class_names))
    if top_k < 0:
        raise ValueError(f"top_k: must be >= 0 (0 = default {DEFAULT_TOP_K}), got {top_k}")
    w_eff, b_eff = effective_linear_model(coef, intercept, mean, scale)
    # Pass the full background mean: shap's array masker would subsample to 100 rows and make
    # the base value (E_bg[logit]) approximate; the independent masker only uses the mean.
    masker = shap.maskers.Independent({"mean": background.mean(axis=0), "cov": None})
    explainer = shap.LinearExplainer((w_eff, b_eff), masker)
    base = np.asarray(explainer.expected_value, np.float64).reshape(coef.shape[0])
    c, n, d = coef.shape[0], samples.shape[0], coef.shape[1]
    # Explained in row chunks: the [C, N, D] float64 attributions of 100k ECGs x 768 dims x 5 classes
    # would be 3 GB (twice, with shap's own [N, D, C] copy); only their mean |.| and the additivity
    # check are needed unless keep_values. Each row's values do not depend on its chunk mates.
    abs_sum, additivity = np.zeros((c, d)), 0.0
    kept = np.empty((c, n, d), np.float32) if keep_values else np.empty((c, 0, d), np.float32)
    for start in range(0, n, SHAP_CHUNK_ROWS):
        rows = samples[start:start + SHAP_CHUNK_ROWS]
        phi = np.asarray(explainer.shap_values(rows), np.float64)  # [n, D, C]
        phi = np.moveaxis(phi.reshape(len(rows), d, c), -1, 0)  # [C, n, D]
        logits = probe_logits(coef, intercept, mean, scale, rows)  # [n, C]
        additivity = max(additivity, float(np.max(np.abs(phi.sum(axis=2) + base[:, None] - logits.T))))
        abs_sum += np.abs(phi).sum(axis=1)
        if keep_values:
            kept[:, start:start + len(rows)] = phi
    mean_abs = abs_sum / n  # [C, D]
    # Averaged over classes and rounded up, so a single class with diffuse attributions is not hidden.
    concentration = shap_concentration(mean_abs)
    return ShapResult(
        shap_values=kept, base_values=base.astype(np.float32),
        dims_for_90pct=concentration.dims_for_90pct,
        top_dims=_top_dims(mean_abs, list(class_names), min(top_k or DEFAULT_TOP_K, coef.shape[1])),
        max_additivity_error=additivity, mean_abs=mean_abs.astype(np.float32),
        dims_for_50pct=concentration.dims_for_50pct, gini=concentration.gini)


# --------------------------------------------------------------------------- figures


def slug(text: str) -> str:
    """A figure-name-safe identifier: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "embeddings"


def _palette(n: int) -> list:
    """n colour-blind-friendly colours: tab10, then tab20, then repeated (markers then differ)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _scatter(projection: np.ndarray, labels: Sequence[str], title: str, legend_title: str) -> bytes:
    """One UMAP scatter coloured by labels, legend outside when there are many groups."""
    from matplotlib.figure import Figure

    labels_arr = np.asarray(labels, dtype=object)
    groups = sorted(set(labels_arr.tolist()))
    colours = _palette(len(groups))
    markers = "osD^v<>"
    fig = Figure(figsize=(6.4, 5.0))
    ax = fig.add_subplot()
    size = float(np.clip(3000 / max(len(projection), 1), 3, 30))
    for i, group in enumerate(groups):
        rows = labels_arr == group
        ax.scatter(projection[rows, 0], projection[rows, 1], s=size, alpha=0.75, linewidths=0,
                   color=colours[i], marker=markers[(i // 20) % len(markers)], label=f"{group} ({rows.sum()})")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(groups) > 6:
        ax.legend(title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                  title_fontsize=8, markerscale=max(1.0, 20 / size), frameon=False, ncol=1 + len(groups) // 25)
    else:
        ax.legend(title=legend_title, loc="best", fontsize=8, title_fontsize=8, markerscale=max(1.0, 20 / size))
    return figure_png(fig)


def _fmt(score: float | None) -> str:
    """A score for a caption; 'undefined' for None."""
    return "undefined" if score is None else f"{score:.2f}"


def umap_figures(result: UmapResult, class_labels: Sequence[str], sources: Sequence[str],
                 title: str) -> list[tuple[str, bytes, str]]:
    """Two UMAP scatters (by class, by source) as (name, png, caption)."""
    base = f"umap/{slug(title)}"
    params = f"n_neighbors={result.n_neighbors}, min_dist={result.min_dist:g}, {result.metric}, seed={result.seed}"
    by_class = _scatter(result.projection, class_labels, f"{title}: UMAP by class", "class")
    by_source = _scatter(result.projection, sources, f"{title}: UMAP by source", "source")
    return [
        (f"{base}/class", by_class,
         f"UMAP of {title} embeddings coloured by class ({params}); class silhouette "
         f"{_fmt(result.silhouette_class)}, trustworthiness {result.trustworthiness:.2f}."),
        (f"{base}/source", by_source,
         f"UMAP of {title} embeddings coloured by source dataset; source silhouette "
         f"{_fmt(result.silhouette_source)} (high means sites are separable)."),
    ]


def _heatmap_dims(result: ShapResult) -> list[int]:
    """Union of the per-class top dims, capped by overall importance, in ascending dim order."""
    union = sorted({dim for dims in result.top_dims.values() for dim, _ in dims})
    if len(union) > MAX_HEATMAP_DIMS:
        overall = result.mean_abs.max(axis=0)
        union = sorted(sorted(union, key=lambda d: (-overall[d], d))[:MAX_HEATMAP_DIMS])
    return union


def shap_figure(result: ShapResult, class_names: Sequence[str], title: str) -> tuple[str, bytes, str]:
    """Heatmap of mean |SHAP| per class over the union of top dims, as (name, png, caption)."""
    from matplotlib.figure import Figure

    dims = _heatmap_dims(result)
    values = result.mean_abs[:, dims] if dims else np.zeros((len(class_names), 1), np.float32)
    fig = Figure(figsize=(min(14.0, 2.5 + 0.35 * max(len(dims), 1)), 1.4 + 0.35 * len(class_names)))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(dims)), [str(d) for d in dims], rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), list(class_names), fontsize=8)
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("class")
    ax.set_title(f"{title}: mean |SHAP| of top dimensions", fontsize=11)
    fig.colorbar(image, ax=ax, label="mean |SHAP| (logit)", fraction=0.046, pad=0.02)
    caption = (f"Mean absolute linear SHAP value (logit units) of the probe on {title} embeddings for the "
               f"top dimensions of each class; on average {result.dims_for_90pct} dimensions carry 90% "
               f"of the attribution mass.")
    return f"shap/{slug(title)}/top-dims", figure_png(fig), caption
