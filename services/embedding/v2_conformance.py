"""`ecglens check v2://HOST:PORT/MODEL`: can ECGLens use this KServe / Triton V2 model as an ECG embedder?

Checks what a run relies on: ServerLive, ServerReady, ModelReady, ModelMetadata, the model's ECG meaning
(from ModelMetadata properties plus the URL's settings, as a run resolves it), a ModelInfer of the right
shape giving finite [batch, dim] embeddings, and determinism. What V2 does not promise (grpc.health.v1,
INVALID_ARGUMENT for an ECG with the wrong lead count) is reported as a warning, not a failure. Every
failed call becomes a [FAIL] line, never a traceback.
"""
from __future__ import annotations

from typing import Any, Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.inference import open_inference_grpc_pb2 as pb
from services.embedding.client import EmbedError
from services.embedding.conformance import Report
from services.embedding.v2_client import V2CardError, V2Client, card_from_v2

_CLIENT_KEYS = ("input_name", "output_name", "datatype", "model_version")


def _detail(err: Exception) -> str:
    if isinstance(err, EmbedError):
        return f"{err.code.name}: {err.details}"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def check_v2(address: str, model: str, settings: dict[str, Any] | None = None, timeout: float = 60.0,
             batch: int = 4, credentials: grpc.ChannelCredentials | None = None,
             metadata: Sequence[tuple[str, str]] = (), connect_timeout: float = 10.0) -> Report:
    """Run the V2 checks against one model of a V2 server; never raises on RPC or model errors."""
    settings = dict(settings or {})
    client_keys = {k: settings.pop(k) for k in _CLIENT_KEYS if k in settings}
    report = Report()
    try:
        client = V2Client(address, model, timeout_s=timeout, credentials=credentials, metadata=metadata,
                          **client_keys)
    except ValueError as err:
        report.add("settings", False, str(err))
        return report
    try:
        _checks(client, report, settings, batch, min(timeout, connect_timeout))
    except Exception as err:  # the report must come out whatever the server does
        report.add("unexpected error", False, f"{type(err).__name__}: {_detail(err)}")
    finally:
        client.close()
    return report


def _checks(client: V2Client, report: Report, settings: dict, batch: int, connect_timeout: float) -> None:
    try:
        if not report.add("ServerLive", client.live(connect_timeout)):
            return
    except EmbedError as err:
        hint = (f" (not reachable within {connect_timeout:g}s: check the address, and TLS)"
                if err.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED") else "")
        if err.code.name == "UNIMPLEMENTED":
            hint = " (not a V2 server; an ecglens.v1 endpoint is checked with `ecglens check HOST:PORT`)"
        report.add("ServerLive", False, _detail(err) + hint)
        return
    stub, md = client.stub, client.call_metadata
    try:
        report.add("ServerReady", stub.ServerReady(pb.ServerReadyRequest(), timeout=client.timeout_s,
                                                   metadata=md).ready)
        ready = stub.ModelReady(pb.ModelReadyRequest(name=client.model_name, version=client.model_version),
                                timeout=client.timeout_s, metadata=md).ready
    except grpc.RpcError as err:
        report.add("ModelReady", False, f"{err.code().name}: {err.details()}")
        return
    if not report.add("ModelReady", ready, client.model_name + (f" version {client.model_version}"
                                                                 if client.model_version else "")):
        return
    try:
        meta = client.metadata()
    except EmbedError as err:
        report.add("ModelMetadata", False, _detail(err))
        return
    tensors = lambda ts: ", ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in ts)  # noqa: E731
    report.add("ModelMetadata", bool(meta["inputs"]) and bool(meta["outputs"]),
               f"inputs {tensors(meta['inputs'])}; outputs {tensors(meta['outputs'])}")
    try:
        card = card_from_v2(client, settings)
    except (V2CardError, EmbedError) as err:
        report.add("ECG meaning (leads, rate, samples, dim)", False, _detail(err))
        return
    report.add("ECG meaning (leads, rate, samples, dim)", True,
               f"{len(card.leads)} leads x {card.num_samples} samples @ {card.sampling_rate_hz:g} Hz -> "
               f"{card.embedding_dim}-d" + (f"; version {card.version}" if card.version else ""))
    for note in card.notes:
        report.warn("assumed", note)
    client.layout, client.normalization = card.layout, card.client_normalization
    client.pooling, client.pool_axis = card.pooling, card.pool_axis
    x = np.random.default_rng(0).normal(0, 0.3, (batch, len(card.leads), card.num_samples)).astype(np.float32)
    try:
        emb = client.embed(x, "conformance-1")
    except EmbedError as err:
        report.add(f"ModelInfer [{batch}, {len(card.leads)}, {card.num_samples}]", False, _detail(err))
        return
    report.add("ModelInfer shape", list(emb.shape) == [batch, card.embedding_dim], f"{list(emb.shape)}")
    report.add("ModelInfer finite", bool(np.isfinite(emb).all()))
    try:
        report.add("ModelInfer deterministic", bool(np.array_equal(client.embed(x, "conformance-2"), emb)))
    except EmbedError as err:
        report.add("ModelInfer deterministic", False, _detail(err))
    _optional(client, report, x)


def _optional(client: V2Client, report: Report, x: np.ndarray) -> None:
    """What V2 does not promise: warnings, not failures. Then the server must still be up."""
    # A consistent tensor (shape and bytes agree) with one lead too many: only lead validation can refuse it.
    wrong = np.concatenate([x, x[:, :1]], axis=1)
    try:
        client.embed(wrong, "conformance-bad")
        report.warn("wrong lead count", "accepted (V2 servers need not validate ECG leads; ECGLens sends the "
                                        "card's leads only)")
    except EmbedError as err:
        if err.code == grpc.StatusCode.INVALID_ARGUMENT:
            report.add("wrong lead count -> INVALID_ARGUMENT", True, _detail(err))
        else:
            report.warn("wrong lead count", f"{_detail(err)} (INVALID_ARGUMENT would tell a client it is the input)")
    try:
        status = health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(),
                                                                  timeout=client.timeout_s).status
        report.add("grpc.health.v1", status == health_pb2.HealthCheckResponse.SERVING,
                   health_pb2.HealthCheckResponse.ServingStatus.Name(status))
    except grpc.RpcError as err:
        report.warn("grpc.health.v1", f"{err.code().name} (V2 does not require it; Kubernetes probes can use "
                                      "ServerReady instead)")
    try:
        report.add("still live after bad input", client.ready())
    except EmbedError as err:
        report.add("still live after bad input", False, _detail(err))
