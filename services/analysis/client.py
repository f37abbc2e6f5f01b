"""Typed client of ecglens.v1.AnalysisService returning services.analysis.core dataclasses and plain dicts."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from protos.ecglens.v1 import analysis_pb2, analysis_pb2_grpc, probing_pb2
from services.analysis.core import ShapResult, UmapResult
from services.common.grpc_options import ChannelClient, open_channel
from services.common.tensors import from_tensor, to_tensor

SERVICE_NAME = "ecglens.v1.AnalysisService"
Figures = list[tuple[str, bytes, str]]
CkaMatrix = dict[tuple[str, str], "float | None"]


def _none_if_nan(value: float) -> float | None:
    """NaN on the wire means 'undefined'; the dataclasses (and results.json) use None."""
    return None if math.isnan(value) else float(value)


def _figures(messages) -> Figures:
    """Figure messages as (name, data, caption) tuples."""
    return [(f.name, bytes(f.data), f.caption) for f in messages]


def linear_model(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 c: float = 0.0) -> probing_pb2.LinearModel:
    """A LinearModel message from numpy arrays."""
    return probing_pb2.LinearModel(coef=to_tensor(coef), intercept=to_tensor(intercept), mean=to_tensor(mean),
                                   scale=to_tensor(scale), c=c)


class AnalysisClient(ChannelClient):
    """Blocking client; use as a context manager or call close()."""

    def __init__(self, address: str, umap_timeout_s: float = 900.0, shap_timeout_s: float = 300.0,
                 structure_timeout_s: float = 900.0, similarity_timeout_s: float = 600.0) -> None:
        self.address = address
        self.umap_timeout_s = umap_timeout_s
        self.shap_timeout_s = shap_timeout_s
        self.structure_timeout_s = structure_timeout_s
        self.similarity_timeout_s = similarity_timeout_s
        self.channel = open_channel(address, SERVICE_NAME)
        self._stub = analysis_pb2_grpc.AnalysisServiceStub(self.channel)

    def umap(self, embeddings: np.ndarray, class_labels: Sequence[str], sources: Sequence[str],
             n_neighbors: int = 0, min_dist: float = 0.0, metric: str = "", seed: int = 0, title: str = "",
             request_id: str = "", timeout_s: float | None = None) -> tuple[UmapResult, Figures]:
        """Project embeddings [N, D] to 2-D; 0/"" parameters mean the server defaults."""
        request = analysis_pb2.UmapRequest(
            request_id=request_id, embeddings=to_tensor(embeddings), class_labels=list(class_labels),
            sources=list(sources), n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, seed=seed, title=title)
        reply = self._stub.Umap(request, timeout=timeout_s or self.umap_timeout_s)
        result = UmapResult(
            projection=np.array(from_tensor(reply.projection, "projection")),
            silhouette_class=_none_if_nan(reply.silhouette_class),
            silhouette_source=_none_if_nan(reply.silhouette_source),
            trustworthiness=reply.trustworthiness, n_neighbors=reply.n_neighbors, min_dist=reply.min_dist,
            metric=reply.metric, seed=seed)
        return result, _figures(reply.figures)

    def shap(self, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray,
             background: np.ndarray, samples: np.ndarray, class_names: Sequence[str], top_k: int = 0,
             title: str = "", request_id: str = "", timeout_s: float | None = None) -> tuple[ShapResult, Figures]:
        """Exact linear SHAP of the probe logit = ((x - mean) / scale) @ coef.T + intercept."""
        request = analysis_pb2.ShapRequest(
            request_id=request_id, model=linear_model(coef, intercept, mean, scale),
            background=to_tensor(background), samples=to_tensor(samples), class_names=list(class_names),
            top_k=top_k, title=title)
        return self.shap_request(request, timeout_s)

    def shap_request(self, request: analysis_pb2.ShapRequest,
                     timeout_s: float | None = None) -> tuple[ShapResult, Figures]:
        """Send a prepared ShapRequest (e.g. with the LinearModel of an EvaluateResponse)."""
        reply = self._stub.Shap(request, timeout=timeout_s or self.shap_timeout_s)
        values = np.array(from_tensor(reply.shap_values, "shap_values"))
        if reply.HasField("mean_abs"):
            mean_abs = np.array(from_tensor(reply.mean_abs, "mean_abs"))
        else:  # a server from before mean_abs was on the wire: derive it from the float32 values
            mean_abs = np.abs(values.astype(np.float64)).mean(axis=1).astype(np.float32)
        result = ShapResult(
            shap_values=values, base_values=np.array(from_tensor(reply.base_values, "base_values")),
            dims_for_90pct=int(reply.dims_for_90pct),
            top_dims={t.class_name: list(zip((int(d) for d in t.dims), (float(v) for v in t.importance)))
                      for t in reply.top_dims},
            max_additivity_error=reply.max_additivity_error, mean_abs=mean_abs,
            dims_for_50pct=int(reply.dims_for_50pct), gini=float(reply.gini))
        return result, _figures(reply.figures)

    def structure(self, embeddings: np.ndarray, class_labels: Sequence[str], sources: Sequence[str],
                  groups: Sequence[str] | None = None, projection: np.ndarray | None = None, k: int = 0,
                  metric: str = "", projection_metric: str = "", seed: int = 0, cv_folds: int = 0,
                  request_id: str = "", timeout_s: float | None = None) -> dict[str, object]:
        """Structure metrics of embeddings [N, D] as structure.structure_summary's flat dict (None = undefined)."""
        request = analysis_pb2.StructureRequest(
            request_id=request_id, embeddings=to_tensor(embeddings), class_labels=list(class_labels),
            sources=list(sources), groups=list(groups or []), k=k, metric=metric,
            projection_metric=projection_metric, seed=seed, cv_folds=cv_folds)
        if projection is not None:
            request.projection.CopyFrom(to_tensor(projection))
        reply = self._stub.Structure(request, timeout=timeout_s or self.structure_timeout_s)
        return {
            "n_rows": int(reply.n_rows), "knn_agreement": reply.knn_agreement, "knn_chance": reply.knn_chance,
            "k": int(reply.k), "metric": reply.metric, "knn_per_class": {s.label: s.value for s in reply.knn_per_class},
            "site_separability": _none_if_nan(reply.site_separability),
            "site_per_source": {s.label: s.value for s in reply.site_per_source},
            "site_cv_folds": int(reply.site_cv_folds), "effective_rank": reply.effective_rank,
            "participation_ratio": reply.participation_ratio, "alignment": _none_if_nan(reply.alignment),
            "uniformity": reply.uniformity, "trustworthiness": _none_if_nan(reply.trustworthiness),
            "continuity": _none_if_nan(reply.continuity), "projection_k": int(reply.projection_k),
            "projection_metric": reply.projection_metric,
        }

    def similarity(self, embeddings: Mapping[str, np.ndarray], title: str = "", request_id: str = "",
                   timeout_s: float | None = None) -> tuple[CkaMatrix, Figures]:
        """Linear CKA of every ordered model pair (a, b), a == b included, as similarity.cka_matrix returns it."""
        request = analysis_pb2.SimilarityRequest(
            request_id=request_id, title=title,
            models=[analysis_pb2.NamedEmbeddings(name=name, embeddings=to_tensor(x)) for name, x in embeddings.items()])
        reply = self._stub.Similarity(request, timeout=timeout_s or self.similarity_timeout_s)
        cka: CkaMatrix = {}
        for pair in reply.pairs:
            cka[(pair.model_a, pair.model_b)] = cka[(pair.model_b, pair.model_a)] = _none_if_nan(pair.cka)
        return cka, _figures(reply.figures)
