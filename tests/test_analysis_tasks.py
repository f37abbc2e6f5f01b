"""The analyse stage's Ray task bodies equal the AnalysisService, value for value and PNG for PNG.

They are called in this process under a one-thread BLAS limit, as a Ray worker holding one CPU
would run them, while the server computes with this process's thread counts (it inherits them):
the tasks must restore those counts themselves (driver_threads), or sums change order.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from orchestrator.experiment import parse_experiment
from orchestrator.stages.analysis_tasks import (computing_with, driver_threads, shap_task, similarity_task,
                                               structure_task, umap_task)
from services.analysis.client import AnalysisClient
from services.common.process import start_server

CLASSES = ["NORM", "MI", "STTC"]


# The stage's Ray tasks as they were before issue #11: each asked the AnalysisService over gRPC.


def served_umap(client: AnalysisClient, emb, classes, sources, params, title):
    result, figures = client.umap(emb, classes, sources, n_neighbors=params["n_neighbors"],
                                  min_dist=params["min_dist"], metric=params["metric"], seed=params["seed"],
                                  title=title)
    scores = {"silhouette_class": result.silhouette_class, "silhouette_source": result.silhouette_source,
              "trustworthiness": result.trustworthiness, "n_neighbors": result.n_neighbors,
              "min_dist": result.min_dist, "metric": result.metric, "seed": params["seed"]}
    return scores, figures, np.asarray(result.projection)


def served_structure(client: AnalysisClient, emb, classes, sources, groups, projection, params, seed):
    return client.structure(emb, classes, sources, groups=groups, projection=projection, k=params["k"],
                            projection_metric=params.get("projection_metric", "euclidean"), seed=seed)


def served_shap(client: AnalysisClient, probe, background, samples, class_names, top_k, title):
    result, figures = client.shap(probe["coef"], probe["intercept"], probe["mean"], probe["scale"], background,
                                  samples, class_names, top_k=top_k, title=title)
    top = {name: [int(d) for d, _ in dims] for name, dims in result.top_dims.items()}
    summary = {"dims_for_50pct": int(result.dims_for_50pct), "dims_for_90pct": int(result.dims_for_90pct),
               "gini": float(result.gini), "top_dims": top, "max_additivity_error": float(result.max_additivity_error)}
    return summary, figures, np.asarray(result.mean_abs)


def served_similarity(client: AnalysisClient, embeddings, title):
    return client.similarity(embeddings, title=title)


# --------------------------------------------------------------------------- data


def embeddings(n: int = 300, d: int = 239, seed: int = 1) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """float64 embeddings (not float32-exact, so a missing wire cast shows) with classes, sources, patients.

    300 x 239 with columns of very different scales, like the demo's handcrafted features: there,
    BLAS with one thread and with two sums in different orders (the silhouettes and CKA show it).
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    x = (rng.normal(size=(len(CLASSES), d))[y] + rng.normal(size=(n, d)) * 3) * rng.uniform(0.1, 100, size=d) + 1 / 3
    sources = ["ptbxl" if (i // 2) % 3 else "chapman" for i in range(n)]
    return x, [CLASSES[k] for k in y], sources, [f"p{i // 2}" for i in range(n)]


def probe(d: int = 239, seed: int = 1) -> dict[str, np.ndarray]:
    """A standardised linear probe in float64 (the stage hands the fitted probe's arrays as they are)."""
    rng = np.random.default_rng(seed)
    return {"coef": rng.normal(size=(len(CLASSES), d)), "intercept": rng.normal(size=len(CLASSES)),
            "mean": rng.normal(size=d) / 7, "scale": rng.uniform(0.5, 2.0, size=d), "c": 1.0}


def assert_same(local, remote, where: str = "") -> None:
    """Equal structure, types and values: arrays bitwise (with dtype), figures byte for byte."""
    assert type(local) is type(remote), (where, type(local), type(remote))
    if isinstance(local, dict):
        assert list(local) == list(remote), where
        for key in local:
            assert_same(local[key], remote[key], f"{where}/{key}")
    elif isinstance(local, (list, tuple)):
        assert len(local) == len(remote), where
        for i, (a, b) in enumerate(zip(local, remote)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(local, np.ndarray):
        assert local.dtype == remote.dtype and np.array_equal(local, remote), where
    else:
        assert local == remote, (where, local, remote)


@pytest.fixture(scope="module")
def threads():
    """This process's thread counts, which the server inherits (2 under conftest's OMP_NUM_THREADS)."""
    return driver_threads()


@pytest.fixture
def one_thread():
    """A one-thread BLAS and OpenMP, as in a Ray worker holding one CPU."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def client():
    handle = start_server("services.analysis", [], name="analysis")
    with AnalysisClient(handle.address) as c:
        yield c
    handle.stop()


# --------------------------------------------------------------------------- equality


def test_umap_and_structure_equal_the_service(client, threads, one_thread):
    x, classes, sources, groups = embeddings()
    params = {"n_neighbors": 10, "min_dist": 0.25, "metric": "cosine", "seed": 7}
    local = umap_task(x, classes, sources, params, "Random ResNet", threads)
    assert_same(local, served_umap(client, x, classes, sources, params, "Random ResNet"), "umap")
    assert [name for name, _, _ in local[1]] == ["umap/random-resnet/class", "umap/random-resnet/source"]
    one_site = umap_task(x[:60], classes[:60], ["ptbxl"] * 60, params, "", threads)
    assert one_site[0]["silhouette_source"] is None
    assert_same(one_site, served_umap(client, x[:60], classes[:60], ["ptbxl"] * 60, params, ""), "umap one site")

    projection = local[2]
    cases = [(groups, projection, {"k": 7, "projection_metric": "cosine"}, 3),
             ([], None, {"k": 5}, 4),
             (groups, None, {"k": 0}, 5)]
    for rows, proj, params, seed in cases:
        mine = structure_task(x, classes, sources, rows, proj, params, seed, threads)
        served = served_structure(client, x, classes, sources, rows, proj, params, seed)
        assert_same(mine, served, f"structure {params}")
    assert mine["site_separability"] is not None and mine["continuity"] is None
    assert structure_task(x, classes, sources, groups, projection, {"k": 7}, 3, threads)["continuity"] is not None


def test_shap_equals_the_service(client, threads, one_thread):
    x, *_ = embeddings(seed=2)
    p = probe()
    for rows, top_k, title in ((slice(0, 200), 4, "ECGFounder"), (slice(200, 300), 0, "")):
        local = shap_task(p, x[:200], x[rows], CLASSES, top_k, title, threads)
        assert_same(local, served_shap(client, p, x[:200], x[rows], CLASSES, top_k, title), f"shap {title}")
        assert local[2].dtype == np.float32 and local[2].shape == (len(CLASSES), x.shape[1])


def test_similarity_equals_the_service(client, threads, one_thread):
    x, *_ = embeddings(seed=3)
    rng = np.random.default_rng(4)
    models = {"b-model": x, "a-model": x @ rng.normal(size=(x.shape[1], 5)), "constant": np.ones((len(x), 3)),
              "noise": rng.normal(size=(len(x), 8))}
    local = similarity_task(models, "synthetic eu+sa", threads)
    assert_same(local, served_similarity(client, models, "synthetic eu+sa"), "similarity")
    cka, figures = local
    assert cka[("b-model", "constant")] is None and 0 < cka[("a-model", "b-model")] <= 1
    assert [name for name, _, _ in figures] == ["similarity/synthetic-eu-sa/cka"]


def test_neither_the_cast_nor_the_threads_go_without_saying(threads):
    """Without the float32 cast, or with one thread instead of two, results differ: the equalities can fail."""
    from services.analysis.similarity import cka_matrix

    two = {"blas": 2, "openmp": 2}

    x, classes, sources, _ = embeddings(seed=3)
    other = x @ np.random.default_rng(4).normal(size=(x.shape[1], 5))
    cast = similarity_task({"a": x, "b": other}, "", threads)[0][("a", "b")]
    assert cast != cka_matrix({"a": x, "b": other})[("a", "b")]
    with threadpool_limits(limits=1):
        alone = similarity_task({"a": x, "b": other}, "")[0][("a", "b")]
    assert alone != similarity_task({"a": x, "b": other}, "", two)[0][("a", "b")]
    # UMAP is not part of this proof: a seeded UMAP runs single-threaded, and whether its silhouette's
    # BLAS calls round differently on 1 and 2 threads depends on OpenBLAS's own split of these small
    # matrices (equal on some machines, so an assertion here was a coin toss, not a check).


def test_computing_with_sets_and_restores_the_thread_counts():
    def blas() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    before = blas()
    with threadpool_limits(limits=1):
        with computing_with({"blas": 2, "openmp": 2}):
            assert blas() == {2}
        assert blas() == {1}
        with computing_with(None):
            assert blas() == {1}
    assert blas() == before


def test_bad_input_names_the_field():
    x, classes, sources, groups = embeddings(n=20, d=12)
    params = {"n_neighbors": 5, "min_dist": 0.1, "metric": "euclidean", "seed": 0}
    with pytest.raises(ValueError, match="class_labels: has 19 entries"):
        umap_task(x, classes[:-1], sources, params, "")
    with pytest.raises(ValueError, match="projection: has 19 rows"):
        structure_task(x, classes, sources, groups, x[:-1, :2], {"k": 5}, 0)
    with pytest.raises(ValueError, match="models: embeddings must have the same rows"):
        similarity_task({"a": x, "b": x[:-1]}, "")


def test_analysis_replicas_is_accepted_but_ignored_with_a_warning(caplog):
    base = {"datasets": ["synthetic:eu@40"], "models": ["handcrafted"]}
    with caplog.at_level(logging.WARNING, logger="orchestrator.experiment"):
        parse_experiment(base, "exp.yaml")
        assert "analysis_replicas" not in caplog.text
        exp = parse_experiment({**base, "runtime": {"analysis_replicas": 3}}, "exp.yaml")
    assert "exp.yaml.runtime.analysis_replicas is ignored" in caplog.text
    assert exp.runtime["analysis_replicas"] == 3
