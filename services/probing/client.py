"""A Python client of ecglens.v1.ProbingService returning the core's ProbeResult."""
from __future__ import annotations

import uuid
from typing import Sequence

import grpc
import numpy as np

from protos.ecglens.v1 import probing_pb2, probing_pb2_grpc
from services.common.grpc_options import channel_options
from services.common.proto_enums import from_enum, to_enum
from services.common.tensors import from_tensor, to_tensor
from services.probing.result import ProbeResult

SERVICE = "ecglens.v1.ProbingService"


class ProbeError(RuntimeError):
    """A request the server answered with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str, request_id: str = "") -> None:
        super().__init__(f"{code.name}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.code, self.details, self.request_id = code, message, request_id


def build_request(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  class_names: Sequence[str], multi_label: bool, seed: int, cs: Sequence[float] | None = None,
                  cv_folds: int = 5, request_id: str | None = None, *, probe: str = "linear",
                  target_type: str = "classification", ks: Sequence[int] | None = None,
                  distance_weighted: bool = False, alphas: Sequence[float] | None = None, hidden_units: int = 0,
                  max_epochs: int = 0, patience: int = 0, val_fraction: float = 0.0,
                  test_groups: Sequence | None = None, bootstrap: int = 0,
                  bootstrap_seed: int = 0) -> probing_pb2.EvaluateRequest:
    """An EvaluateRequest with FLOAT32 tensors (0 / empty options mean the server's defaults)."""
    # Both the enum and its deprecated text: new servers read the enum, old ones the text.
    config = probing_pb2.ProbeConfig(
        probe=probe, probe_kind=to_enum(probing_pb2.ProbeKind, probe), seed=int(seed), cs=list(cs or []),
        cv_folds=int(cv_folds), ks=[int(k) for k in ks or []],
        distance_weighted=bool(distance_weighted), alphas=[float(a) for a in alphas or []],
        hidden_units=int(hidden_units), max_epochs=int(max_epochs), patience=int(patience),
        val_fraction=float(val_fraction))
    return probing_pb2.EvaluateRequest(
        request_id=request_id or uuid.uuid4().hex, train_embeddings=to_tensor(train_x),
        train_labels=to_tensor(train_y), test_embeddings=to_tensor(test_x), test_labels=to_tensor(test_y),
        class_names=list(class_names), multi_label=bool(multi_label), config=config, target_type=target_type,
        target_kind=to_enum(probing_pb2.TargetKind, target_type),
        test_groups=[str(g) for g in (test_groups if test_groups is not None else [])], bootstrap=int(bootstrap),
        bootstrap_seed=int(bootstrap_seed))


def _array(tensor, name: str) -> np.ndarray:
    """A writable float64 copy of a response tensor (the float32 wire values, widened exactly)."""
    return np.array(from_tensor(tensor, name), dtype=np.float64)


def _model_arrays(reply: probing_pb2.EvaluateResponse) -> dict:
    """coef/intercept/mean/scale/c of the linear model; empty arrays and c = 0 when the reply has none."""
    if not reply.HasField("model"):
        empty = np.zeros((0,))
        return {"coef": empty, "intercept": empty.copy(), "mean": empty.copy(), "scale": empty.copy(), "c": 0.0}
    model = reply.model
    return {"coef": _array(model.coef, "model.coef"), "intercept": _array(model.intercept, "model.intercept"),
            "mean": _array(model.mean, "model.mean"), "scale": _array(model.scale, "model.scale"),
            "c": float(model.c)}


def result_from_response(reply: probing_pb2.EvaluateResponse) -> ProbeResult:
    """The core's ProbeResult rebuilt from an EvaluateResponse."""
    probs = (_array(reply.test_probabilities, "test_probabilities") if reply.HasField("test_probabilities")
             else None)
    return ProbeResult(
        metrics=dict(reply.metrics), per_class_auroc=dict(reply.per_class_auroc), **_model_arrays(reply),
        test_logits=_array(reply.test_logits, "test_logits"), warnings=list(reply.warnings),
        probe=from_enum(probing_pb2.ProbeKind, reply.probe_kind) or reply.probe or "linear",
        target_type=from_enum(probing_pb2.TargetKind, reply.target_kind) or reply.target_type or "classification",
        test_probabilities=probs, hyperparameters=dict(reply.hyperparameters),
        metrics_ci_low=dict(reply.metrics_ci_low), metrics_ci_high=dict(reply.metrics_ci_high),
        bootstrap=int(reply.bootstrap))


class ProbingClient:
    """Talks to one probing endpoint; thread-safe (one channel, many calls)."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.address = address
        options = channel_options(SERVICE)
        self.channel = (grpc.secure_channel(address, credentials, options) if credentials
                        else grpc.insecure_channel(address, options))
        self.stub = probing_pb2_grpc.ProbingServiceStub(self.channel)

    def evaluate(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 class_names: Sequence[str], multi_label: bool, seed: int, cs: Sequence[float] | None = None,
                 cv_folds: int = 5, timeout: float = 300, request_id: str | None = None,
                 **options) -> ProbeResult:
        """Fit and score one probe remotely; raise ProbeError on a non-OK status.

        options are build_request's keyword options: probe ("linear" | "knn" | "mlp"), target_type
        ("classification" | "regression"), ks, distance_weighted, alphas, hidden_units, max_epochs,
        patience, val_fraction, test_groups, bootstrap, bootstrap_seed.
        """
        request = build_request(train_x, train_y, test_x, test_y, class_names, multi_label, seed, cs, cv_folds,
                                request_id, **options)
        try:
            reply = self.stub.Evaluate(request, timeout=timeout)
        except grpc.RpcError as err:
            raise ProbeError(err.code(), err.details(), request.request_id) from None
        return result_from_response(reply)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> "ProbingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
