"""ecglens.v1.AnalysisService: UMAP, linear SHAP, structure metrics and CKA over gRPC (python -m services.analysis)."""
from __future__ import annotations

import argparse
import logging
import math
import time
from typing import Callable, TypeVar

import grpc
import numpy as np

from protos.ecglens.v1 import analysis_pb2, analysis_pb2_grpc, tensor_pb2
from services.analysis import structure, tasks
from services.common.runtime import add_server_arguments, serve_threaded
from services.common.tensors import TensorError, from_tensor, to_tensor

SERVICE_NAME = "ecglens.v1.AnalysisService"
log = logging.getLogger("services.analysis")

Reply = TypeVar("Reply")


class InvalidRequest(ValueError):
    """A request that fails validation; the message names the offending field."""


def _decode(tensor: tensor_pb2.Tensor, name: str, ndim: int) -> np.ndarray:
    """Decode a Tensor to float64 with the expected rank and only finite values."""
    try:
        arr = from_tensor(tensor, name)
    except TensorError as err:
        raise InvalidRequest(str(err)) from None
    if arr.ndim != ndim:
        raise InvalidRequest(f"{name}: expected {ndim}-D tensor, got shape {list(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise InvalidRequest(f"{name}: contains {int(np.count_nonzero(~np.isfinite(arr)))} non-finite value(s) "
                             "(NaN or Inf)")
    return arr.astype(np.float64)


def _figures(items: list[tuple[str, bytes, str]]) -> list[tensor_pb2.Figure]:
    """(name, png, caption) tuples as Figure messages."""
    return [tensor_pb2.Figure(name=n, media_type="image/png", data=png, caption=c) for n, png, c in items]


def _nan_if_none(value: float | None) -> float:
    """Undefined scores travel as NaN (proto3 doubles have no null)."""
    return math.nan if value is None else float(value)


def _decode_shap(request: analysis_pb2.ShapRequest) -> dict[str, np.ndarray]:
    """Decode a ShapRequest's tensors with their expected ranks (shapes are checked by tasks.shap)."""
    if not request.HasField("model"):
        raise InvalidRequest("model: not set")
    model = request.model
    return {
        "coef": _decode(model.coef, "model.coef", 2),
        "intercept": _decode(model.intercept, "model.intercept", 1),
        "mean": _decode(model.mean, "model.mean", 1),
        "scale": _decode(model.scale, "model.scale", 1),
        "background": _decode(request.background, "background", 2),
        "samples": _decode(request.samples, "samples", 2),
    }


def _decode_similarity(request: analysis_pb2.SimilarityRequest) -> dict[str, np.ndarray]:
    """Decode a SimilarityRequest's named matrices: non-empty, unique names (rows are checked by tasks)."""
    arrays: dict[str, np.ndarray] = {}
    for i, model in enumerate(request.models):
        if not model.name:
            raise InvalidRequest(f"models[{i}].name: must not be empty")
        if model.name in arrays:
            raise InvalidRequest(f"models[{i}].name: {model.name!r} appears twice")
        arrays[model.name] = _decode(model.embeddings, f"models[{model.name!r}].embeddings", 2)
    return arrays


def _scores(values: dict[str, float]) -> list[analysis_pb2.LabelScore]:
    """{label: value} as LabelScore messages."""
    return [analysis_pb2.LabelScore(label=k, value=v) for k, v in values.items()]


def _structure_response(request_id: str, result: structure.StructureResult) -> analysis_pb2.StructureResponse:
    """A StructureResult as its response message (undefined scores as NaN)."""
    au, site, pres = result.alignment_uniformity, result.site, result.preservation
    return analysis_pb2.StructureResponse(
        request_id=request_id, n_rows=result.n_rows, knn_agreement=result.knn.agreement,
        knn_chance=result.knn.chance, k=result.knn.k, metric=result.knn.metric,
        knn_per_class=_scores(result.knn.per_class),
        site_separability=math.nan if site is None else site.auroc,
        site_per_source=_scores({} if site is None else site.per_source),
        site_cv_folds=0 if site is None else site.n_folds,
        effective_rank=result.effective_rank, participation_ratio=result.participation_ratio,
        alignment=_nan_if_none(au.alignment), uniformity=au.uniformity,
        trustworthiness=math.nan if pres is None else pres.trustworthiness,
        continuity=math.nan if pres is None else pres.continuity,
        projection_k=0 if pres is None else pres.k, projection_metric="" if pres is None else pres.metric)


class AnalysisServicer(analysis_pb2_grpc.AnalysisServiceServicer):
    """Umap, Shap, Structure and Similarity RPCs: decode, compute with services.analysis.tasks, encode."""

    def _run(self, method: str, request_id: str, context: grpc.ServicerContext, work: Callable[[], Reply]) -> Reply:
        """Run work(); map validation errors to INVALID_ARGUMENT and anything else to INTERNAL."""
        started = time.perf_counter()
        try:
            reply = work()
        except ValueError as err:  # InvalidRequest and core's own checks
            log.info("%s %s rejected: %s", method, request_id or "-", err)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except Exception:
            log.exception("%s %s failed", method, request_id or "-")
            context.abort(grpc.StatusCode.INTERNAL, f"{method} failed; see the analysis server log")
        log.info("%s %s done in %.2fs", method, request_id or "-", time.perf_counter() - started)
        return reply

    def Umap(self, request: analysis_pb2.UmapRequest, context: grpc.ServicerContext) -> analysis_pb2.UmapResponse:
        """2-D UMAP with silhouettes, trustworthiness and two scatter figures."""
        return self._run("Umap", request.request_id, context, lambda: self._umap(request))

    def Shap(self, request: analysis_pb2.ShapRequest, context: grpc.ServicerContext) -> analysis_pb2.ShapResponse:
        """Exact linear SHAP of a probe with concentration summaries and a heatmap."""
        return self._run("Shap", request.request_id, context, lambda: self._shap(request))

    def Structure(self, request: analysis_pb2.StructureRequest,
                  context: grpc.ServicerContext) -> analysis_pb2.StructureResponse:
        """Structure metrics of one model's embeddings."""
        return self._run("Structure", request.request_id, context, lambda: self._structure(request))

    def Similarity(self, request: analysis_pb2.SimilarityRequest,
                   context: grpc.ServicerContext) -> analysis_pb2.SimilarityResponse:
        """Linear CKA between every pair of models with a heatmap."""
        return self._run("Similarity", request.request_id, context, lambda: self._similarity(request))

    @staticmethod
    def _structure(request: analysis_pb2.StructureRequest) -> analysis_pb2.StructureResponse:
        """Decoded Structure request to response."""
        x = _decode(request.embeddings, "embeddings", 2)
        projection = _decode(request.projection, "projection", 2) if request.HasField("projection") else None
        result = tasks.structure(x, list(request.class_labels), list(request.sources), list(request.groups),
                                 projection, k=request.k, metric=request.metric,
                                 projection_metric=request.projection_metric, seed=request.seed,
                                 cv_folds=request.cv_folds)
        return _structure_response(request.request_id, result)

    @staticmethod
    def _similarity(request: analysis_pb2.SimilarityRequest) -> analysis_pb2.SimilarityResponse:
        """Decoded Similarity request to response."""
        arrays = _decode_similarity(request)
        cka, figures = tasks.similarity(arrays, request.title)
        names = list(arrays)
        pairs = [analysis_pb2.CkaPair(model_a=a, model_b=b, cka=_nan_if_none(cka[(a, b)]))
                 for i, a in enumerate(names) for b in names[i:]]
        return analysis_pb2.SimilarityResponse(request_id=request.request_id, pairs=pairs, figures=_figures(figures))

    @staticmethod
    def _umap(request: analysis_pb2.UmapRequest) -> analysis_pb2.UmapResponse:
        """Decoded UMAP request to response."""
        x = _decode(request.embeddings, "embeddings", 2)
        result, figures = tasks.umap(x, list(request.class_labels), list(request.sources),
                                     n_neighbors=request.n_neighbors, min_dist=request.min_dist,
                                     metric=request.metric, seed=request.seed, title=request.title)
        return analysis_pb2.UmapResponse(
            request_id=request.request_id, projection=to_tensor(result.projection),
            silhouette_class=_nan_if_none(result.silhouette_class),
            silhouette_source=_nan_if_none(result.silhouette_source),
            trustworthiness=result.trustworthiness, figures=_figures(figures),
            n_neighbors=result.n_neighbors, min_dist=result.min_dist, metric=result.metric)

    @staticmethod
    def _shap(request: analysis_pb2.ShapRequest) -> analysis_pb2.ShapResponse:
        """Decoded SHAP request to response."""
        result, figures = tasks.shap(class_names=list(request.class_names), top_k=request.top_k, title=request.title,
                                     **_decode_shap(request))
        top = [analysis_pb2.ClassTopDims(class_name=name, dims=[d for d, _ in dims], importance=[v for _, v in dims])
               for name, dims in result.top_dims.items()]
        return analysis_pb2.ShapResponse(
            request_id=request.request_id, shap_values=to_tensor(result.shap_values),
            base_values=to_tensor(result.base_values), dims_for_90pct=result.dims_for_90pct,
            top_dims=top, max_additivity_error=result.max_additivity_error, figures=_figures(figures),
            dims_for_50pct=result.dims_for_50pct, gini=result.gini, mean_abs=to_tensor(result.mean_abs))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the analysis server."""
    parser = argparse.ArgumentParser(prog="python -m services.analysis", description=__doc__)
    return add_server_arguments(parser, port=8700, workers_help="concurrent RPCs").parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve AnalysisService until SIGTERM/SIGINT."""
    from services.analysis.tasks import preload

    preload()  # before the server's thread pool exists (see tasks.PRELOADED)
    serve_threaded(analysis_pb2_grpc.add_AnalysisServiceServicer_to_server, AnalysisServicer(), SERVICE_NAME,
                   parse_args(argv))


if __name__ == "__main__":
    main()
