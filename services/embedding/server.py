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
from pathlib import Path

import grpc

from protos.ecglens.v1 import embedding_pb2_grpc
from services.common.logs import setup_logging
from services.common.runtime import ServerSpec
from services.common.runtime import serve as serve_spec
from services.embedding import v2_servicer
from services.embedding.backends import BackendError
from services.embedding.card import CardError, load_card
from services.embedding.metrics import ServerMetrics
from services.embedding.security import Security, SecurityError
from services.embedding.servicer import SERVICE, EmbeddingServicer

log = logging.getLogger("ecglens.embedding")


async def serve(package: Path, host: str, port: int, metrics_port: int, port_file: str | None,
                grace_s: float, security: Security | None = None) -> None:
    """Bind, load the model, flip health to SERVING, and run until SIGTERM/SIGINT, then drain."""
    security = security or Security()
    metrics = ServerMetrics(load_card(package).name)
    servicer = EmbeddingServicer(metrics)

    def register(server: grpc.aio.Server, _pool: futures.Executor) -> None:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        # The same model also speaks the KServe/Triton Open Inference Protocol (V2), for existing clients.
        v2_servicer.add_v2_to_server(server, servicer)

    def started(bound: int) -> None:
        if metrics_port >= 0:
            metrics_bound = metrics.serve(metrics_port, host)
            log.info("metrics on http://%s:%d/metrics", host, metrics_bound, extra={"metrics_port": metrics_bound})
        log.info("listening on %s:%d; loading %s", host, bound, package, extra={"port": bound})

    async def warm_up() -> None:
        model = await servicer.load(package)  # a failed load raises here and the process exits non-zero
        log.info("SERVING %s %s", model.card.name, model.card.version,
                 extra={"model": model.card.name, "backend": model.backend.description})

    await serve_spec(ServerSpec(
        services=[SERVICE, v2_servicer.SERVICE], register=register, host=host, port=port, port_file=port_file,
        grace_s=grace_s, interceptors=security.interceptors(), bind=security.bind, warm_up=warm_up,
        on_started=started, on_stopped=servicer.drain))


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
