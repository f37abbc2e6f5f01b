"""Standard parts of every ECGLens gRPC server: health, reflection, options, signal handling."""
from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from typing import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.grpc_options import SERVER_OPTIONS

log = logging.getLogger(__name__)


def add_health_and_reflection(server: grpc.Server, service_names: Iterable[str]) -> health.HealthServicer:
    """Register grpc.health.v1 (all NOT_SERVING until set) and reflection for the given services."""
    names = list(service_names)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    return health_servicer


def set_serving(health_servicer: health.HealthServicer, service_names: Iterable[str], serving: bool) -> None:
    """Mark the overall server and each named service SERVING or NOT_SERVING."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        health_servicer.set(name, status)


def serve_blocking(register: Callable[[grpc.Server], None], service_names: list[str], port: int,
                   host: str = "127.0.0.1", max_workers: int = 4, grace_s: float = 10.0,
                   on_ready: Callable[[int], None] | None = None) -> None:
    """Run a thread-pool gRPC server until SIGTERM/SIGINT, then drain in-flight calls for grace_s."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=SERVER_OPTIONS)
    register(server)
    health_servicer = add_health_and_reflection(server, service_names)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind {host}:{port}")
    server.start()
    set_serving(health_servicer, service_names, True)
    log.info("serving %s on %s:%d", ",".join(service_names), host, bound)
    if on_ready:
        on_ready(bound)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    set_serving(health_servicer, service_names, False)
    server.stop(grace_s).wait()
    log.info("stopped")
