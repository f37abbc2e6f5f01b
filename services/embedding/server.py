"""The embedding server: one model package per process behind ecglens.v1.EmbeddingService.

Also runs grpc.health.v1 (SERVING only after load and warm-up), server reflection and Prometheus
metrics on a separate port; SIGTERM drains in-flight requests before exiting.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.ecglens.v1 import embedding_pb2, embedding_pb2_grpc, tensor_pb2
from services.common.grpc_options import SERVER_OPTIONS
from services.common.logs import setup_logging
from services.common.process import write_port_file
from services.common.tensors import TensorError, from_tensor, to_tensor
from services.embedding.backends import BackendError
from services.embedding import v2_servicer
from services.embedding.batcher import Draining, DynamicBatcher, QueueFull
from services.embedding.metrics import ServerMetrics
from services.embedding.model import EmbeddingModel, InputError

log = logging.getLogger("ecglens.embedding")
SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
STREAM_WINDOW = 8  # requests of one stream processed concurrently, so they can share batches


class RequestFailed(Exception):
    """A request that ends with a gRPC status instead of an embedding."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def card_message(model: EmbeddingModel) -> embedding_pb2.ModelCard:
    """The card as the protocol's ModelCard."""
    card = model.card
    return embedding_pb2.ModelCard(
        name=card.name, version=card.version, embedding_dim=card.output.embedding_dim,
        sampling_rate_hz=card.input.sampling_rate_hz, leads=list(card.input.leads),
        num_samples=card.input.num_samples, max_batch_size=card.serving.max_batch_size, license=card.license,
        backend=card.backend, kind=card.kind, objective=card.objective, normalization=card.input.normalization,
        input_units=card.input.units, params=model.params, fingerprint=model.fingerprint,
        description=card.description)


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Implements GetModelCard, Embed and EmbedStream over one model and its batcher."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.model: EmbeddingModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.metrics = metrics

    def attach(self, model: EmbeddingModel, batcher: DynamicBatcher) -> None:
        """Called once the model is loaded; until then requests get UNAVAILABLE."""
        self.model, self.batcher = model, batcher

    def _ready(self) -> tuple[EmbeddingModel, DynamicBatcher]:
        if self.model is None or self.batcher is None:
            raise RequestFailed(grpc.StatusCode.UNAVAILABLE, "model is still loading; retry shortly")
        return self.model, self.batcher

    async def GetModelCard(self, request, context):  # noqa: N802 (gRPC method name)
        """Return the card of the hosted model."""
        try:
            model, _ = self._ready()
        except RequestFailed as failed:
            await context.abort(failed.code, failed.message)
        return card_message(model)

    async def _embed(self, request: embedding_pb2.EmbedRequest) -> np.ndarray:
        model, batcher = self._ready()
        if not request.HasField("ecg"):
            raise RequestFailed(grpc.StatusCode.INVALID_ARGUMENT, "ecg is missing")
        try:
            x = model.validate(from_tensor(request.ecg, "ecg"))
        except (TensorError, InputError) as err:
            raise RequestFailed(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        try:
            return await batcher.submit(x)
        except QueueFull as err:
            raise RequestFailed(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except Draining as err:
            raise RequestFailed(grpc.StatusCode.UNAVAILABLE, str(err)) from None
        except BackendError as err:
            raise RequestFailed(grpc.StatusCode.INTERNAL, f"model failed: {err}") from None
        except Exception as err:  # a crash inside a backend must not take the server down
            log.exception("inference failed", extra={"request_id": request.request_id})
            raise RequestFailed(grpc.StatusCode.INTERNAL, f"model failed: {type(err).__name__}: {err}") from None

    async def _answer(self, request: embedding_pb2.EmbedRequest, method: str) -> embedding_pb2.EmbedResponse:
        """Embed one request; failures become a response whose status is set."""
        started = time.perf_counter()
        try:
            emb = await self._embed(request)
        except RequestFailed as failed:
            self.metrics.count(method, failed.code.name)
            log.warning("rejected", extra={"request_id": request.request_id, "code": failed.code.name,
                                           "reason": failed.message, "method": method})
            return embedding_pb2.EmbedResponse(request_id=request.request_id, status=tensor_pb2.Status(
                code=failed.code.value[0], message=failed.message))
        self.metrics.count(method, "OK")
        log.debug("embedded", extra={"request_id": request.request_id, "batch": len(emb),
                                     "ms": round(1e3 * (time.perf_counter() - started), 2)})
        return embedding_pb2.EmbedResponse(request_id=request.request_id, embedding=to_tensor(emb))

    async def Embed(self, request, context):  # noqa: N802
        """Embed one batch; failures are the RPC's status."""
        response = await self._answer(request, "Embed")
        if response.status.code:
            await context.abort(_STATUS_BY_NUMBER[response.status.code], response.status.message)
        return response

    async def EmbedStream(self, request_iterator, context):  # noqa: N802
        """One response per request, in request order; a bad request fails only itself."""
        pending: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await pending.put(asyncio.ensure_future(self._answer(request, "EmbedStream")))
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await reader
        finally:
            reader.cancel()


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


async def _load(servicer: EmbeddingServicer, package: Path, metrics: ServerMetrics) -> EmbeddingModel:
    loop = asyncio.get_running_loop()
    model = await loop.run_in_executor(None, EmbeddingModel.load, package)
    serving = model.card.serving
    batcher = DynamicBatcher(model.embed, serving.max_batch_size, serving.max_queue_delay_ms / 1e3,
                             serving.max_queue_ecgs, on_batch=metrics.observe_batch)
    batcher.start()
    servicer.attach(model, batcher)
    return model


async def serve(package: Path, host: str, port: int, metrics_port: int, port_file: str | None,
                grace_s: float, security: "Security | None" = None) -> None:
    """Bind, load the model, flip health to SERVING, and run until SIGTERM/SIGINT, then drain."""
    from services.embedding.card import load_card
    from services.embedding.security import Security

    security = security or Security()
    card = load_card(package)
    metrics = ServerMetrics(card.name)
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=security.interceptors())
    servicer = EmbeddingServicer(metrics)
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
    # The same model also speaks the KServe/Triton Open Inference Protocol (V2), for existing clients.
    v2_services = v2_servicer.add_v2_to_server(server, servicer)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    served = ("", SERVICE, *v2_services)
    for name in served:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [SERVICE, *v2_services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    bound = security.bind(server, f"{host}:{port}")
    if not bound:
        raise SystemExit(f"cannot bind {host}:{port}")
    await server.start()
    if metrics_port >= 0:
        metrics_bound = metrics.serve(metrics_port, host)
        log.info("metrics on http://%s:%d/metrics", host, metrics_bound, extra={"metrics_port": metrics_bound})
    # Published once bound, so a client can watch health go from NOT_SERVING to SERVING.
    write_port_file(port_file, bound)
    log.info("listening on %s:%d; loading %s", host, bound, package, extra={"port": bound})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    load = asyncio.ensure_future(_load(servicer, package, metrics))
    done, _ = await asyncio.wait({load, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if load in done:
        model = load.result()  # a failed load raises here and the process exits non-zero
        for name in served:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("SERVING %s %s", model.card.name, model.card.version,
                 extra={"model": model.card.name, "backend": model.backend.description})
        await stop.wait()
    log.info("draining: refusing new requests, finishing in-flight ones (grace %.0fs)", grace_s)
    for name in served:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace_s)
    if servicer.batcher:
        await servicer.batcher.drain()
        await servicer.batcher.close()
    log.info("stopped")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of `ecglens serve` (also `python -m services.embedding`)."""
    parser = parser or argparse.ArgumentParser(prog="ecglens serve", description=__doc__)
    parser.add_argument("--model", required=True,
                        help="zoo name (e.g. random-resnet, handcrafted; built on first use) or a package directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in containers)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    parser.add_argument("--metrics-port", type=int, default=-1,
                        help="Prometheus /metrics HTTP port (0 = any free port, -1 = off; containers use 8502)")
    parser.add_argument("--port-file", help="write the bound gRPC port here once listening (for launchers)")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds to drain in-flight requests on SIGTERM")
    parser.add_argument("--log-level", default="INFO", help="DEBUG logs one line per request (never samples)")
    parser.add_argument("--tls-cert", help="PEM server certificate: serve over TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates signed by it (mutual TLS)")
    parser.add_argument("--auth-token-file", help="file holding a bearer token every call must present "
                                                  "(authorization: Bearer ...); health and reflection stay open")
    return parser


def run(args: argparse.Namespace) -> int:
    """Resolve the model, then serve until signalled."""
    from services.embedding.zoo.registry import resolve_package

    from services.embedding.card import CardError

    from services.embedding.security import Security, SecurityError

    setup_logging(args.log_level)
    os.environ["ECGLENS_SERVER"] = "1"  # backends tune themselves for serving (e.g. no busy-waiting threads)

    try:
        security = Security.from_files(args.tls_cert, args.tls_key, args.tls_client_ca, args.auth_token_file)
        package = resolve_package(args.model)
        asyncio.run(serve(package, args.host, args.port, args.metrics_port, args.port_file, args.grace, security))
    except (CardError, BackendError, SecurityError) as err:
        # A bad package is the user's to fix: one clear line, no traceback, non-zero exit.
        log.error("cannot serve %s: %s", args.model, err)
        print(f"ecglens serve: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m services.embedding`."""
    return run(build_parser().parse_args(argv))
