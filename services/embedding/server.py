"""The embedding server: one model package per process behind ecglens.v1.EmbeddingService.

Also speaks the KServe/Triton Open Inference Protocol (V2) and runs grpc.health.v1 (SERVING only
after load and warm-up), server reflection and Prometheus metrics on a separate port; SIGTERM drains
in-flight requests before exiting. The gRPC plumbing is services.common.runtime's, shared by every server.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from protos.ecglens.v1 import embedding_pb2_grpc
from services.common.admission import AdmissionInterceptor, RequestBudget
from services.common.grpc_options import EMBED_MAX_MESSAGE_BYTES
from services.common.logs import setup_logging
from services.common.memory import reuse_large_buffers
from services.common.runtime import ServerSpec
from services.common.runtime import serve as serve_spec
from services.embedding import v2_servicer
from services.embedding.backends import BackendError
from services.embedding.card import CardError, load_card
from services.embedding.metrics import ServerMetrics
from services.embedding.security import Security, SecurityError
from services.embedding.servicer import SERVICE, EmbeddingServicer

log = logging.getLogger("ecglens.embedding")
MIB = 1024 * 1024
DEFAULT_BUDGET_MIB = 1024  # requests in flight; see docs/serving.md for the pod memory limit it implies


@dataclass(frozen=True)
class Limits:
    """What one server lets clients hold: message size, bytes in flight, drain period, metrics exposure."""

    max_message_bytes: int = EMBED_MAX_MESSAGE_BYTES
    budget_bytes: int = DEFAULT_BUDGET_MIB * MIB
    budget_wait_s: float = 1.0
    drain_s: float = 1.0
    metrics_host: str = "127.0.0.1"
    metrics_auth: bool = False


async def serve(package: Path, host: str, port: int, metrics_port: int, port_file: str | None,
                grace_s: float, security: Security | None = None, limits: Limits | None = None) -> None:
    """Bind, load the model, flip health to SERVING, and run until SIGTERM/SIGINT, then drain."""
    security, limits = security or Security(), limits or Limits()
    metrics = ServerMetrics(load_card(package).name)
    servicer = EmbeddingServicer(metrics)
    budget = RequestBudget(limits.budget_bytes, limits.budget_wait_s)
    metrics.track_budget(budget)
    admission = AdmissionInterceptor(budget, limits.max_message_bytes, count=metrics.count,
                                     counted_prefixes=(f"/{SERVICE}/", f"/{v2_servicer.SERVICE}/"),
                                     tolerant_streams={f"/{SERVICE}/EmbedStream"})

    def register(server: grpc.aio.Server, _pool: futures.Executor) -> None:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        # The same model also speaks the KServe/Triton Open Inference Protocol (V2), for existing clients.
        v2_servicer.add_v2_to_server(server, servicer)

    def started(bound: int) -> None:
        if metrics_port >= 0:
            tls = security.ssl_context()
            metrics_bound = metrics.serve(metrics_port, limits.metrics_host,
                                          token=security.token if limits.metrics_auth else None, tls=tls)
            log.info("metrics on %s://%s:%d/metrics%s", "https" if tls else "http", limits.metrics_host,
                     metrics_bound, " (bearer token required)" if limits.metrics_auth else "",
                     extra={"metrics_port": metrics_bound})
        log.info("listening on %s:%d; loading %s", host, bound, package, extra={"port": bound})

    async def warm_up() -> None:
        model = await servicer.load(package)  # a failed load raises here and the process exits non-zero
        log.info("SERVING %s %s", model.card.name, model.card.version,
                 extra={"model": model.card.name, "backend": model.backend.description})

    await serve_spec(ServerSpec(
        services=[SERVICE, v2_servicer.SERVICE], register=register, host=host, port=port, port_file=port_file,
        grace_s=grace_s, drain_s=limits.drain_s, max_receive_bytes=limits.max_message_bytes,
        # The token is checked on metadata first, so a refused call's body is never read.
        interceptors=[*security.interceptors(on_denied=metrics.count_auth_failure), admission],
        bind=security.bind, warm_up=warm_up, on_started=started, on_stopped=servicer.drain))


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of `ecglens serve` (also `python -m services.embedding`)."""
    parser = parser or argparse.ArgumentParser(prog="ecglens serve", description=__doc__)
    parser.add_argument("--model", required=True,
                        help="zoo name (e.g. random-resnet, handcrafted; built on first use) or a package directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in containers)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    parser.add_argument("--metrics-port", type=int, default=-1,
                        help="Prometheus /metrics HTTP port (0 = any free port, -1 = off; containers use 8502)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="interface of the metrics endpoint (default 127.0.0.1; 0.0.0.0 exposes it, e.g. to "
                             "a Prometheus scraping the pod)")
    parser.add_argument("--metrics-auth", action="store_true",
                        help="the metrics endpoint asks for the same bearer token as gRPC (needs --auth-token-file); "
                             "it serves HTTPS whenever --tls-cert is given")
    parser.add_argument("--port-file", help="write the bound gRPC port here once listening (for launchers)")
    parser.add_argument("--grace", type=float, default=20.0,
                        help="seconds in-flight requests may finish once the listener closed after SIGTERM")
    parser.add_argument("--drain-seconds", type=float, default=1.0,
                        help="after SIGTERM: seconds health says NOT_SERVING and new calls get UNAVAILABLE "
                             "'draining' before the listener closes (default 1; behind a load balancer use "
                             "its health-check period)")
    parser.add_argument("--max-message-mb", type=float, default=EMBED_MAX_MESSAGE_BYTES / MIB,
                        help=f"largest request in MiB (default {EMBED_MAX_MESSAGE_BYTES // MIB}: 256 ECGs of "
                             "12 x 5000 float32); larger ones get RESOURCE_EXHAUSTED unread")
    parser.add_argument("--request-budget-mb", type=float, default=DEFAULT_BUDGET_MIB,
                        help=f"memory budget for requests in flight in MiB (default {DEFAULT_BUDGET_MIB}); a request "
                             "reserves 4x the largest message before it is read and 4x its own size after; "
                             "without room within --budget-wait it gets RESOURCE_EXHAUSTED")
    parser.add_argument("--budget-wait", type=float, default=1.0,
                        help="seconds a request may wait for room in the budget (default 1)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG logs one line per request (never samples)")
    parser.add_argument("--tls-cert", help="PEM server certificate: serve over TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates signed by it (mutual TLS)")
    parser.add_argument("--auth-token-file", help="file holding a bearer token every call must present "
                                                  "(authorization: Bearer ...); health and reflection stay open")
    return parser


def limits_from_args(args: argparse.Namespace, security: Security) -> Limits:
    """The Limits the flags ask for; ValueError names a flag that makes no sense."""
    if args.max_message_mb <= 0 or args.request_budget_mb <= 0:
        raise ValueError("--max-message-mb and --request-budget-mb must be positive")
    if args.request_budget_mb < 4 * args.max_message_mb:
        raise ValueError(f"--request-budget-mb ({args.request_budget_mb:g}) must be at least 4 x --max-message-mb "
                         f"({args.max_message_mb:g}): one request of the largest size costs that much")
    if args.metrics_auth and not security.token:
        raise ValueError("--metrics-auth needs --auth-token-file (the token the metrics endpoint asks for)")
    return Limits(max_message_bytes=int(args.max_message_mb * MIB), budget_bytes=int(args.request_budget_mb * MIB),
                  budget_wait_s=max(0.0, args.budget_wait), drain_s=max(0.0, args.drain_seconds),
                  metrics_host=args.metrics_host, metrics_auth=args.metrics_auth)


def run(args: argparse.Namespace) -> int:
    """Resolve the model, then serve until signalled."""
    from services.embedding.zoo.registry import resolve_package

    setup_logging(args.log_level)
    reuse_large_buffers()  # every request is megabytes: reuse its buffers instead of faulting fresh pages
    os.environ["ECGLENS_SERVER"] = "1"  # backends tune themselves for serving (e.g. no busy-waiting threads)

    try:
        security = Security.from_files(args.tls_cert, args.tls_key, args.tls_client_ca, args.auth_token_file)
        limits = limits_from_args(args, security)
        package = resolve_package(args.model)
        asyncio.run(serve(package, args.host, args.port, args.metrics_port, args.port_file, args.grace, security,
                          limits))
    except (CardError, BackendError, SecurityError, ValueError) as err:
        # A bad package is the user's to fix: one clear line, no traceback, non-zero exit.
        log.error("cannot serve %s: %s", args.model, err)
        print(f"ecglens serve: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m services.embedding`."""
    return run(build_parser().parse_args(argv))
