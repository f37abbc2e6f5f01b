"""Analysis service: known-answer SHAP, UMAP structure scores, figures, and the gRPC server."""
from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.ecglens.v1 import analysis_pb2, analysis_pb2_grpc
from services.analysis import core, shap_stats, similarity, structure
from services.analysis.client import AnalysisClient, linear_model
from services.common.process import start_server
from services.common.tensors import to_tensor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- data


def random_probe(rng: np.random.Generator, c: int = 3, d: int = 12) -> dict[str, np.ndarray]:
    """A standardised linear probe with its background and samples, all float32 as on the wire."""
    return {
        "coef": rng.normal(size=(c, d)).astype(np.float32),
        "intercept": rng.normal(size=c).astype(np.float32),
        "mean": rng.normal(size=d).astype(np.float32),
        "scale": rng.uniform(0.5, 2.0, size=d).astype(np.float32),
        "background": rng.normal(size=(200, d)).astype(np.float32),
        "samples": rng.normal(size=(60, d)).astype(np.float32),
    }


def numpy_logits(p: dict[str, np.ndarray]) -> np.ndarray:
    """Probe logits [N, C] computed independently of the code under test."""
    x = p["samples"].astype(np.float64)
    z = (x - p["mean"].astype(np.float64)) / p["scale"].astype(np.float64)
    return z @ p["coef"].astype(np.float64).T + p["intercept"].astype(np.float64)


def blobs(n: int = 240, d: int = 16, k: int = 3, spread: float = 6.0, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """k well-separated Gaussian clusters in d dims, with their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    labels = rng.integers(0, k, size=n)
    x = centres[labels] + rng.normal(size=(n, d))
    return x.astype(np.float32), [f"class-{i}" for i in labels]


def scalars(result: core.UmapResult) -> tuple:
    """Every UmapResult field except the projection."""
    return (result.silhouette_class, result.silhouette_source, result.trustworthiness,
            result.n_neighbors, result.min_dist, result.metric, result.seed)


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, list[str], list[str]]:
    """Separated class clusters with sources assigned at random (no site effect)."""
    x, labels = blobs()
    sources = ["ptbxl" if s else "chapman" for s in np.random.default_rng(1).random(len(x)) < 0.5]
    return x, labels, sources


# --------------------------------------------------------------------------- SHAP known answers


def test_shap_plus_base_equals_probe_logits():
    p = random_probe(np.random.default_rng(0))
    result = core.linear_shap(**p, class_names=["a", "b", "c"])
    logits = numpy_logits(p)
    assert result.shap_values.shape == (3, 60, 12) and result.shap_values.dtype == np.float32
    reconstructed = result.shap_values.astype(np.float64).sum(axis=2) + result.base_values[:, None].astype(np.float64)
    np.testing.assert_allclose(reconstructed, logits.T, rtol=0, atol=1e-6)
    assert result.max_additivity_error < 1e-9


def test_shap_values_match_closed_form_and_base_is_background_mean_logit():
    p = random_probe(np.random.default_rng(1))
    result = core.linear_shap(**p, class_names=["a", "b", "c"])
    w_eff = p["coef"].astype(np.float64) / p["scale"].astype(np.float64)
    delta = p["samples"].astype(np.float64) - p["background"].astype(np.float64).mean(axis=0)
    expected = w_eff[:, None, :] * delta[None, :, :]  # phi = w_eff * (x - E_bg[x])
    np.testing.assert_allclose(result.shap_values, expected, rtol=1e-5, atol=1e-6)
    bg_logits = numpy_logits({**p, "samples": p["background"]})
    np.testing.assert_allclose(result.base_values, bg_logits.mean(axis=0), rtol=0, atol=1e-5)


def test_single_nonzero_coefficient_needs_one_dimension():
    p = random_probe(np.random.default_rng(2), c=2, d=16)
    p["coef"][:] = 0
    p["coef"][:, 5] = [-1.5, 1.5]
    result = core.linear_shap(**p, class_names=["neg", "pos"], top_k=3)
    assert result.dims_for_90pct == 1
    for name in ("neg", "pos"):
        (top_dim, importance), *rest = result.top_dims[name]
        assert top_dim == 5 and importance > 0
        assert all(v == 0 for _, v in rest)


def test_equal_contributions_need_ninety_percent_of_dimensions():
    d = 20
    rng = np.random.default_rng(3)
    # Background mean exactly 0 and |x| exactly 1: every dimension's mean |SHAP| is identical.
    background = np.vstack([np.ones(d), -np.ones(d)]).astype(np.float32)
    samples = rng.choice([-1.0, 1.0], size=(50, d)).astype(np.float32)
    result = core.linear_shap(np.ones((2, d), np.float32), np.zeros(2, np.float32), np.zeros(d, np.float32),
                              np.ones(d, np.float32), background, samples, ["a", "b"])
    assert result.dims_for_90pct == math.ceil(0.9 * d)


def test_dims_for_mass_edge_cases():
    assert shap_stats.dims_for_mass(np.array([0.0, 0.0])) == 0
    assert shap_stats.dims_for_mass(np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])) == 9
    assert shap_stats.dims_for_mass(np.array([0.05, 0.95])) == 1


def test_top_dimension_recovered_from_a_fitted_probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=300)
    x = rng.normal(size=(300, 16))
    x[:, 7] += 3.0 * y  # only dimension 7 carries the label
    scaler = StandardScaler().fit(x)
    w = LogisticRegression().fit(scaler.transform(x), y).coef_[0]
    coef = np.vstack([-w, w]).astype(np.float32)  # binary probes keep two columns
    result = core.linear_shap(coef, np.zeros(2, np.float32), scaler.mean_.astype(np.float32),
                              scaler.scale_.astype(np.float32), x[:200].astype(np.float32),
                              x[200:].astype(np.float32), ["normal", "abnormal"])
    assert result.top_dims["abnormal"][0][0] == 7
    assert result.top_dims["normal"][0][0] == 7
    assert result.dims_for_90pct < 16


@pytest.mark.parametrize("field,mutate", [
    ("samples", lambda p: p.update(samples=p["samples"][:, :-1])),
    ("model.scale", lambda p: p.update(scale=p["scale"][:-1])),
    ("model.intercept", lambda p: p.update(intercept=p["intercept"][:-1])),
    ("background", lambda p: p["background"].__setitem__((0, 0), np.nan)),
])
def test_linear_shap_rejects_inconsistent_input(field, mutate):
    p = random_probe(np.random.default_rng(5))
    mutate(p)
    with pytest.raises(ValueError, match=field):
        core.linear_shap(**p, class_names=["a", "b", "c"])


def test_shap_figure_is_png():
    p = random_probe(np.random.default_rng(6))
    result = core.linear_shap(**p, class_names=["a", "b", "c"])
    name, png, caption = core.shap_figure(result, ["a", "b", "c"], "Random ResNet")
    assert name == "shap/random-resnet/top-dims"
    assert png.startswith(PNG_MAGIC) and "90%" in caption
    assert core.shap_figure(result, ["a", "b", "c"], "Random ResNet")[1] == png  # deterministic


# --------------------------------------------------------------------------- UMAP


def test_umap_is_deterministic_for_a_fixed_seed(clusters):
    x, labels, sources = clusters
    first = core.umap_projection(x, labels, sources, seed=7)
    second = core.umap_projection(x, labels, sources, seed=7)
    assert first.projection.shape == (len(x), 2) and first.projection.dtype == np.float32
    np.testing.assert_array_equal(first.projection, second.projection)
    assert scalars(first) == scalars(second)
    other = core.umap_projection(x, labels, sources, seed=8)
    assert not np.array_equal(first.projection, other.projection)


def test_separated_clusters_score_high(clusters):
    x, labels, sources = clusters
    result = core.umap_projection(x, labels, sources)
    assert result.silhouette_class > 0.5
    assert result.trustworthiness > 0.9
    assert (result.n_neighbors, result.min_dist, result.metric, result.seed) == (15, 0.1, "euclidean", 0)


def test_random_labels_have_silhouette_near_zero(clusters):
    x, _, sources = clusters
    random_labels = [f"class-{i}" for i in np.random.default_rng(2).integers(0, 3, size=len(x))]
    result = core.umap_projection(x, random_labels, sources)
    assert abs(result.silhouette_class) < 0.1


def test_site_offset_raises_source_silhouette(clusters):
    x, labels, sources = clusters
    same = core.umap_projection(x, labels, sources)
    offset = np.zeros(x.shape[1], np.float32)
    offset[:4] = 8.0  # a per-site shift of the embedding
    shifted = x + np.where(np.asarray(sources)[:, None] == "ptbxl", offset, 0).astype(np.float32)
    moved = core.umap_projection(shifted, labels, sources)
    assert abs(same.silhouette_source) < 0.1
    assert moved.silhouette_source > same.silhouette_source + 0.2


def test_undefined_silhouette_and_small_n():
    x, labels = blobs(n=5, d=4)
    result = core.umap_projection(x, labels, ["one-site"] * 5)
    assert result.silhouette_source is None
    assert result.n_neighbors == 4  # clamped to N - 1
    assert 0.0 <= result.trustworthiness <= 1.0
    with pytest.raises(ValueError, match="at least 5 rows"):
        core.umap_projection(x[:4], labels[:4], ["s"] * 4)
    with pytest.raises(ValueError, match="metric"):
        core.umap_projection(x, labels, ["s"] * 5, metric="hamming-ish")


def test_umap_figures_are_pngs(clusters):
    x, labels, sources = clusters
    result = core.umap_projection(x, labels, sources)
    figures = core.umap_figures(result, labels, sources, "Random ResNet")
    assert [name for name, _, _ in figures] == ["umap/random-resnet/class", "umap/random-resnet/source"]
    for _, png, caption in figures:
        assert png.startswith(PNG_MAGIC) and caption


# --------------------------------------------------------------------------- gRPC service


@pytest.fixture(scope="module")
def server():
    """The analysis server in a separate process."""
    handle = start_server("services.analysis", [], name="analysis")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(server):
    """A client of the module's server."""
    with AnalysisClient(server.address) as c:
        yield c


def assert_still_serving(address: str) -> None:
    """The server answers health checks with SERVING."""
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ecglens.v1.AnalysisService"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_umap_equals_in_process(client, clusters):
    x, labels, sources = clusters
    local = core.umap_projection(x, labels, sources, n_neighbors=10, seed=3)
    remote, figures = client.umap(x, labels, sources, n_neighbors=10, seed=3, title="Random ResNet")
    np.testing.assert_array_equal(remote.projection, local.projection)
    assert scalars(remote) == scalars(local)
    assert [name for name, _, _ in figures] == ["umap/random-resnet/class", "umap/random-resnet/source"]
    assert all(png.startswith(PNG_MAGIC) for _, png, _ in figures)


def test_grpc_umap_undefined_silhouette_is_none(client):
    x, labels = blobs(n=30, d=8)
    remote, _ = client.umap(x, labels, ["one-site"] * 30)
    assert remote.silhouette_source is None and remote.silhouette_class is not None


def test_grpc_shap_equals_in_process(client):
    p = random_probe(np.random.default_rng(8))
    local = core.linear_shap(**p, class_names=["a", "b", "c"], top_k=4)
    remote, figures = client.shap(**p, class_names=["a", "b", "c"], top_k=4, title="probe")
    np.testing.assert_array_equal(remote.shap_values, local.shap_values)
    np.testing.assert_array_equal(remote.base_values, local.base_values)
    assert remote.dims_for_90pct == local.dims_for_90pct
    assert remote.top_dims == local.top_dims
    assert remote.max_additivity_error == local.max_additivity_error
    np.testing.assert_array_equal(remote.mean_abs, local.mean_abs)  # on the wire since dims_for_50pct/gini
    assert (remote.dims_for_50pct, remote.gini) == (local.dims_for_50pct, local.gini)
    assert 1 <= remote.dims_for_50pct <= remote.dims_for_90pct and 0 <= remote.gini < 1
    assert len(figures) == 1 and figures[0][1].startswith(PNG_MAGIC)


def assert_same_summary(remote: dict, local: dict) -> None:
    """Equal keys; strings, ints and None equal; floats equal up to cross-process BLAS rounding."""
    assert remote.keys() == local.keys()
    for key, value in local.items():
        if isinstance(value, dict):
            assert remote[key] == pytest.approx(value, rel=1e-9), key
        elif isinstance(value, float):
            assert remote[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert remote[key] == value, key


def site_groups(n: int) -> tuple[list[str], list[str]]:
    """Patient ids (two records each) and a source per patient for n rows."""
    rng = np.random.default_rng(11)
    patient = np.arange(n) // 2
    site = np.array(["ptbxl", "chapman"])[rng.integers(0, 2, n // 2 + 1)][patient]
    return [f"p{i}" for i in patient], site.tolist()


def test_grpc_structure_equals_in_process(client, clusters):
    x, labels, _ = clusters
    groups, sources = site_groups(len(x))
    projection = core.umap_projection(x, labels, sources, n_neighbors=10, seed=3).projection
    local = structure.structure_summary(structure.structure_metrics(
        x, labels, sources, groups, projection, k=7, metric="cosine", projection_metric="euclidean", seed=5, cv=4))
    remote = client.structure(x, labels, sources, groups=groups, projection=projection, k=7, seed=5, cv_folds=4)
    assert_same_summary(remote, local)
    assert remote["knn_agreement"] > 0.9 > remote["knn_chance"]
    assert remote["site_separability"] < 0.7 and remote["site_cv_folds"] == 4
    assert remote["continuity"] > 0.9 and remote["projection_k"] == 7 and remote["projection_metric"] == "euclidean"


def test_grpc_structure_defaults_and_undefined_scores(client):
    x, labels = blobs(n=40, d=8)
    remote = client.structure(x, labels, ["one-site"] * 40)
    assert_same_summary(remote, structure.structure_summary(structure.structure_metrics(x, labels, ["one-site"] * 40)))
    assert (remote["k"], remote["metric"]) == (10, "cosine")
    assert remote["site_separability"] is None and remote["site_per_source"] == {}
    assert remote["trustworthiness"] is None and remote["continuity"] is None


def test_grpc_similarity_equals_in_process(client):
    rng = np.random.default_rng(12)
    base = rng.normal(size=(120, 6)).astype(np.float32)
    models = {"ECGFounder": base, "rotated": (base @ np.linalg.qr(rng.normal(size=(6, 6)))[0]).astype(np.float32),
              "random-resnet": rng.normal(size=(120, 10)).astype(np.float32)}
    remote, figures = client.similarity(models, title="PTB-XL")
    local = similarity.cka_matrix(models)
    assert remote.keys() == local.keys()
    for pair, value in local.items():
        assert remote[pair] == pytest.approx(value, rel=1e-9), pair
    assert remote[("ECGFounder", "rotated")] == pytest.approx(1.0, abs=1e-6)
    assert [name for name, _, _ in figures] == ["similarity/ptb-xl/cka"] and figures[0][1].startswith(PNG_MAGIC)


def _umap_request(x: np.ndarray, labels: list[str], sources: list[str]) -> analysis_pb2.UmapRequest:
    return analysis_pb2.UmapRequest(embeddings=to_tensor(x), class_labels=labels, sources=sources)


def _shap_request(p: dict[str, np.ndarray]) -> analysis_pb2.ShapRequest:
    return analysis_pb2.ShapRequest(
        model=linear_model(p["coef"], p["intercept"], p["mean"], p["scale"]),
        background=to_tensor(p["background"]), samples=to_tensor(p["samples"]), class_names=["a", "b", "c"])


def _without_last_label(request: analysis_pb2.StructureRequest) -> analysis_pb2.StructureRequest:
    """A copy of request with one class label fewer than rows."""
    copy = analysis_pb2.StructureRequest()
    copy.CopyFrom(request)
    del copy.class_labels[-1]
    return copy


def _bad_requests() -> list[tuple[str, str, object, list[str]]]:
    """(method, case, request, words the error must contain)."""
    x, labels = blobs(n=20, d=8)
    nan_x = x.copy()
    nan_x[3, 2] = np.nan
    p = random_probe(np.random.default_rng(9))
    narrow = {**p, "samples": p["samples"][:, :-2]}
    no_scale = _shap_request(p)
    no_scale.model.ClearField("scale")
    plain = analysis_pb2.StructureRequest(embeddings=to_tensor(x), class_labels=labels, sources=["s"] * 20)
    nan_structure = analysis_pb2.StructureRequest(embeddings=to_tensor(nan_x), class_labels=labels,
                                                  sources=["s"] * 20)
    short_projection = analysis_pb2.StructureRequest(embeddings=to_tensor(x), class_labels=labels,
                                                     sources=["s"] * 20, projection=to_tensor(x[:-1, :2]))
    bad_metric = analysis_pb2.StructureRequest(embeddings=to_tensor(x), class_labels=labels, sources=["s"] * 20,
                                               metric="hamming-ish")

    def similarity_request(*models: tuple[str, np.ndarray]) -> analysis_pb2.SimilarityRequest:
        return analysis_pb2.SimilarityRequest(
            models=[analysis_pb2.NamedEmbeddings(name=n, embeddings=to_tensor(e)) for n, e in models])

    return [
        ("Structure", "structure-nan", nan_structure, ["embeddings", "non-finite"]),
        ("Structure", "structure-label-length", _without_last_label(plain), ["class_labels", "19", "20"]),
        ("Structure", "structure-projection-rows", short_projection, ["projection", "19", "20"]),
        ("Structure", "structure-metric", bad_metric, ["metric", "hamming-ish"]),
        ("Similarity", "similarity-rows", similarity_request(("a", x), ("b", x[:-1])),
         ["same rows", "'a': 20", "'b': 19"]),
        ("Similarity", "similarity-nan", similarity_request(("a", x), ("b", nan_x)),
         ["models['b'].embeddings", "non-finite"]),
        ("Similarity", "similarity-duplicate", similarity_request(("a", x), ("a", x)), ["models[1].name", "twice"]),
        ("Similarity", "similarity-empty", similarity_request(), ["models", "at least one"]),
        ("Umap", "label-length", _umap_request(x, labels[:-1], ["s"] * 20), ["class_labels", "19", "20"]),
        ("Umap", "source-length", _umap_request(x, labels, ["s"] * 21), ["sources", "21"]),
        ("Umap", "nan", _umap_request(nan_x, labels, ["s"] * 20), ["embeddings", "non-finite"]),
        ("Umap", "too-few", _umap_request(x[:3], labels[:3], ["s"] * 3), ["embeddings", "at least 5"]),
        ("Shap", "d-mismatch", _shap_request(narrow), ["samples", "[N, 12]", "model.coef"]),
        ("Shap", "missing-scale", no_scale, ["model.scale", "unsupported dtype"]),
    ]


@pytest.mark.parametrize("method,case,request_msg,words", [pytest.param(*case, id=case[1]) for case in _bad_requests()])
def test_grpc_bad_input_is_invalid_argument(server, method, case, request_msg, words):
    with grpc.insecure_channel(server.address) as channel:
        stub = analysis_pb2_grpc.AnalysisServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, method)(request_msg, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    for word in words:
        assert word in info.value.details(), (case, info.value.details())
    assert_still_serving(server.address)
