"""The analyse stage's Ray tasks: UMAP, structure, SHAP and CKA on the AnalysisService's own code.

Each task imports services.analysis.tasks and computes where Ray places it (any host of the
cluster), so no matrix travels over gRPC and no server has to be reachable. Each returns exactly
what the stage used to get back from the AnalysisClient: inputs take the wire's float32 cast
(tasks.as_sent), scores come back as Python numbers with None for undefined ones, figures are the
same PNGs. Runs used to compute on a server started from the driver, with the driver's BLAS and
OpenMP thread counts, whereas a Ray worker defaults to one thread per CPU it holds; BLAS sums in
another order with another thread count (silhouettes move in the 7th digit), so each task runs
with the driver's counts (driver_threads) and results stay identical.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import ray
from threadpoolctl import threadpool_info, threadpool_limits

from services.analysis import tasks, umap_selection
from services.analysis.core import slug
from services.common.threads import free_openblas_control

Threads = dict[str, int]  # threadpoolctl user_api ("blas", "openmp") -> threads
# Each analysis computes in its own worker, like a probe fit; a worker that dies (e.g. OOM) is retried.
# Exceptions are not: the computation is deterministic, so it would fail the same way again.
TASK_OPTIONS = {"num_cpus": 1, "max_retries": 2}


def driver_threads() -> Threads:
    """BLAS and OpenMP thread counts of this process, which a server it started would have inherited."""
    counts: Threads = {}
    for lib in threadpool_info():
        api = lib["user_api"]
        if api in ("blas", "openmp") and lib["num_threads"]:
            counts[api] = max(counts.get(api, 1), int(lib["num_threads"]))
    return counts


@contextmanager
def computing_with(threads: Threads | None) -> Iterator[None]:
    """Run the body with these BLAS / OpenMP thread counts (None: the worker's own), then restore them."""
    tasks.preload()  # every analysis task enters here: lazy imports happen once, before any computing thread
    if not threads:
        yield
        return
    free_openblas_control()  # a task owns its worker, so it may take OpenBLAS control
    with threadpool_limits(limits=dict(threads)):
        yield


def grid_points(params: dict) -> tuple[list[int], list[float]] | None:
    """The experiment's UMAP grid (empty lists take the single setting), or None when it has one point."""
    grid = params.get("grid") or {}
    ks = list(grid.get("n_neighbors") or []) or [params["n_neighbors"]]
    ds = list(grid.get("min_dist") or []) or [params["min_dist"]]
    return (ks, ds) if len(ks) * len(ds) > 1 else None


def _selection_summary(selection) -> dict:
    """results.json `grid` and `selected` of a UMAP selection."""
    rows = selection.rows()
    return {"grid": rows, "selected": dict(rows[selection.selected])}


def umap_task(emb: np.ndarray, classes: list[str], sources: list[str], params: dict, title: str,
              threads: Threads | None = None) -> tuple[dict, list, np.ndarray]:
    """UMAP of one model's embeddings (over the grid when one is set): scores, figures, projection."""
    grid = grid_points(params)
    selection = None
    with computing_with(threads):
        if grid is None:
            result, figures = tasks.umap(tasks.as_sent(emb), classes, sources, n_neighbors=params["n_neighbors"],
                                         min_dist=params["min_dist"], metric=params["metric"], seed=params["seed"],
                                         title=title)
        else:
            result, figures, selection = tasks.umap_grid(tasks.as_sent(emb), classes, sources, *grid,
                                                         metric=params["metric"], seed=params["seed"], title=title)
    scores = {"silhouette_class": result.silhouette_class, "silhouette_source": result.silhouette_source,
              "trustworthiness": result.trustworthiness, "n_neighbors": result.n_neighbors,
              "min_dist": result.min_dist, "metric": result.metric, "seed": params["seed"]}
    if selection is not None:
        scores.update(_selection_summary(selection))
    return scores, figures, result.projection


def umap_top_task(emb: np.ndarray, rows: np.ndarray, mean_abs: np.ndarray, classes: list[str], params: dict,
                  title: str, threads: Threads | None = None) -> tuple[dict, list]:
    """The seed's UMAP: on the top-k SHAP dimensions (standardised) of the given rows, over the grid."""
    dims = umap_selection.top_dims(mean_abs, int(params["shap_top_k"]))
    x = umap_selection.standardise_columns(tasks.as_sent(emb)[np.asarray(rows)][:, dims])
    ks, ds = grid_points(params) or ([params["n_neighbors"]], [params["min_dist"]])
    name = f"{title} (top {len(dims)} SHAP dimensions)"
    with computing_with(threads):
        selection = umap_selection.select_umap(x, classes, ks, ds, params["metric"], params["seed"])
        png = umap_selection.selection_figure(selection, classes, name)
    point = selection.points[selection.selected]
    summary = {"k": len(dims), "dims": dims, **_selection_summary(selection)}
    caption = (f"UMAP of {title} on the {len(dims)} embedding dimensions its linear probe relies on most (mean |SHAP| "
               f"over classes; columns standardised), as the seed paper draws it, at every grid setting; framed: the "
               f"highest class silhouette (n_neighbors={point.n_neighbors}, min_dist={point.min_dist:g}).")
    return summary, [(f"umap-selection/{slug(title)}/top-shap", png, caption)]


def structure_task(emb: np.ndarray, classes: list[str], sources: list[str], groups: list[str],
                   projection: np.ndarray | None, params: dict, seed: int, threads: Threads | None = None) -> dict:
    """Structure metrics (kNN agreement, site separability, rank, alignment/uniformity, continuity)."""
    with computing_with(threads):
        result = tasks.structure(tasks.as_sent(emb), classes, sources, groups=groups,
                                 projection=None if projection is None else tasks.as_sent(projection), k=params["k"],
                                 projection_metric=params.get("projection_metric", "euclidean"), seed=seed)
    return tasks.structure_summary(result)


def shap_task(probe: dict, background: np.ndarray, samples: np.ndarray, class_names: list[str], top_k: int,
              title: str, threads: Threads | None = None) -> tuple[dict, list, np.ndarray]:
    """Exact linear SHAP of one probe: summary, figures, mean |SHAP| [C, D]."""
    arrays = {key: tasks.as_sent(probe[key]) for key in ("coef", "intercept", "mean", "scale")}
    with computing_with(threads):
        # The run keeps only the summaries, so the per-ECG values are not materialised (memory stays bounded).
        result, figures = tasks.shap(background=tasks.as_sent(background), samples=tasks.as_sent(samples),
                                     class_names=class_names, top_k=top_k, title=title, keep_values=False, **arrays)
    top = {name: [int(d) for d, _ in dims] for name, dims in result.top_dims.items()}
    summary = {"dims_for_50pct": int(result.dims_for_50pct), "dims_for_90pct": int(result.dims_for_90pct),
               "gini": float(result.gini), "top_dims": top, "max_additivity_error": float(result.max_additivity_error)}
    return summary, figures, result.mean_abs


def similarity_task(embeddings: dict[str, np.ndarray], title: str,
                    threads: Threads | None = None) -> tuple[dict, list]:
    """Linear CKA between every pair of models on the same records, with its heatmap."""
    with computing_with(threads):
        return tasks.similarity({name: tasks.as_sent(x) for name, x in embeddings.items()}, title=title)


def shap_rows_task(probe: dict, emb: np.ndarray, background_rows: np.ndarray, sample_rows: np.ndarray,
                   class_names: list[str], top_k: int, title: str, threads: Threads | None = None):
    """shap_task on rows of one embedding matrix, cut where the task runs (the driver holds only a ref)."""
    return shap_task(probe, emb[background_rows], emb[sample_rows], class_names, top_k, title, threads)


def similarity_rows_task(names: list[str], title: str, threads: Threads | None, *matrices: np.ndarray):
    """similarity_task on matrices passed as top-level arguments, so Ray resolves their refs."""
    return similarity_task(dict(zip(names, matrices)), title, threads)


umap_remote = ray.remote(**TASK_OPTIONS)(umap_task)
umap_top_remote = ray.remote(**TASK_OPTIONS)(umap_top_task)
structure_remote = ray.remote(**TASK_OPTIONS)(structure_task)
shap_remote = ray.remote(**TASK_OPTIONS)(shap_rows_task)
similarity_remote = ray.remote(**TASK_OPTIONS)(similarity_rows_task)
