"""The one bootstrap of every ECGLens gRPC server: options, health, reflection, interceptors, port file, drain.

Shutdown (SIGTERM/SIGINT, or the parent process gone): health turns NOT_SERVING, the listener stays
open for drain_s answering new calls UNAVAILABLE "draining" (health and reflection keep answering, so
a load balancer sees NOT_SERVING), then it closes and in-flight calls get grace_s to finish.

Every server is a grpc.aio server. Async servicers (embedding) are registered as they are;
synchronous, CPU-bound servicers (probing, analysis) are wrapped by `threaded` so that each call
runs in a bounded thread pool with the blocking-server semantics their code relies on: grpcio
before the fix of grpc/grpc#37518 lets a synchronous handler on an aio server run on after
context.abort(), which `threaded` rules out on every grpcio the project allows (>= 1.81).
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.admission import refusal
from services.common.grpc_options import MAX_MESSAGE_BYTES, server_options
from services.common.process import watch_parent, write_port_file

log = logging.getLogger(__name__)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Methods open to everyone at every moment: health (probes must see NOT_SERVING) and reflection.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
DRAINING = "server is draining (shutting down); retry on another replica"


@dataclass
class ServerSpec:
    """What one server hosts and how it binds, warms up and drains."""

    services: Sequence[str]  # full service names: health and reflection cover exactly these
    # Adds the servicers; a synchronous one goes in as threaded(servicer, pool).
    register: Callable[[grpc.aio.Server, futures.Executor], None]
    host: str = "127.0.0.1"
    port: int = 0
    port_file: str | None = None
    grace_s: float = 10.0  # seconds in-flight calls may finish once the listener closed
    drain_s: float = 1.0  # seconds the listener stays open answering UNAVAILABLE "draining" after a stop signal
    max_receive_bytes: int = MAX_MESSAGE_BYTES  # larger messages are refused by gRPC core, unread
    max_workers: int = 4  # threads of the pool handed to register, for servicers wrapped by `threaded`
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    bind: Callable[[grpc.aio.Server, str], int] | None = None  # default: an insecure port
    # Runs once the port is published; health stays NOT_SERVING until it returns (a raise ends the server).
    warm_up: Callable[[], Awaitable[Any]] | None = None
    on_started: Callable[[int], None] | None = None  # called with the bound port, before warm-up
    on_stopped: Callable[[], Awaitable[None]] | None = None  # after the server stopped taking calls


class _Aborted(Exception):
    """Raised in a worker thread by ThreadContext.abort, turned into the RPC's status on the event loop."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class ThreadContext:
    """The servicer context a threaded handler sees: abort() raises, as on a blocking grpc.server."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        """End the call with code and details; never returns."""
        raise _Aborted(code, details)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class threaded:  # noqa: N801 (used like a function: threaded(servicer, pool))
    """An async face of a synchronous unary servicer: each method runs in pool with a ThreadContext."""

    def __init__(self, servicer: object, pool: futures.Executor) -> None:
        self._servicer, self._pool = servicer, pool

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)

        @functools.wraps(method)
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._pool, method, request, ThreadContext(context))
            except _Aborted as aborted:
                await context.abort(aborted.code, aborted.details)

        return call


async def add_health_and_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> health.aio.HealthServicer:
    """Register grpc.health.v1 (all NOT_SERVING until set) and reflection for the given services."""
    names = list(service_names)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await set_serving(health_servicer, names, False)
    reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    return health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, service_names: Iterable[str],
                      serving: bool) -> None:
    """Mark the overall server and each named service SERVING or NOT_SERVING."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        await health_servicer.set(name, status)


class DrainGate(grpc.aio.ServerInterceptor):
    """Once closed, answers every call but health and reflection UNAVAILABLE "draining", without reading it."""

    def __init__(self) -> None:
        self.draining = False

    async def intercept_service(self, continuation, details):
        """Pass calls through until draining starts."""
        if not self.draining or details.method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        handler = await continuation(details)
        return None if handler is None else refusal(handler, grpc.StatusCode.UNAVAILABLE, DRAINING)


def _stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _warmed_up(spec: ServerSpec, stop: asyncio.Event) -> bool:
    """Run spec.warm_up unless a stop signal comes first; True when it finished (its errors propagate)."""
    if spec.warm_up is None:
        return True
    warm_up = asyncio.ensure_future(spec.warm_up())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({warm_up, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not warm_up.done():
        warm_up.cancel()
        return False
    warm_up.result()
    return True


async def serve(spec: ServerSpec, stop: asyncio.Event | None = None) -> None:
    """Bind, publish the port, warm up, flip health to SERVING; on SIGTERM/SIGINT (or `stop`) drain and return."""
    pool = futures.ThreadPoolExecutor(max_workers=spec.max_workers, thread_name_prefix="rpc")
    gate = DrainGate()
    server = grpc.aio.server(migration_thread_pool=pool, options=server_options(spec.max_receive_bytes),
                             interceptors=[gate, *spec.interceptors])
    spec.register(server, pool)
    health_servicer = await add_health_and_reflection(server, spec.services)
    stop = stop or _stop_event()
    loop = asyncio.get_running_loop()
    # Started by a launcher (services.common.process.start_server): stop when it dies, even by SIGKILL.
    watch_parent(lambda: loop.call_soon_threadsafe(stop.set), hard_exit_after_s=spec.drain_s + spec.grace_s + 10)
    address = f"{spec.host}:{spec.port}"
    bound = spec.bind(server, address) if spec.bind else server.add_insecure_port(address)
    if not bound:
        raise SystemExit(f"cannot bind {address}")
    await server.start()
    if spec.on_started:
        spec.on_started(bound)
    if spec.warm_up is None:  # nothing to wait for: SERVING before the port is published
        await set_serving(health_servicer, spec.services, True)
    # With a warm-up the port is published first, so a client can watch NOT_SERVING turn SERVING.
    write_port_file(spec.port_file, bound)
    log.info("serving %s on %s:%d", ",".join(spec.services), spec.host, bound, extra={"port": bound})
    try:
        warm = spec.warm_up is None or await _warmed_up(spec, stop)
        if spec.warm_up is not None and warm:
            await set_serving(health_servicer, spec.services, True)
        await stop.wait()
        gate.draining = True
        await set_serving(health_servicer, spec.services, False)
        if warm and spec.drain_s > 0:  # never served: nobody to turn away gracefully
            log.info("draining: NOT_SERVING, new calls answered UNAVAILABLE for %.1fs, then the listener closes",
                     spec.drain_s)
            await asyncio.sleep(spec.drain_s)
        log.info("closing: finishing in-flight calls (grace %.0fs)", spec.grace_s)
        await server.stop(spec.grace_s)
        if spec.on_stopped:
            await spec.on_stopped()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    log.info("stopped")


def serve_blocking(spec: ServerSpec) -> None:
    """Run serve(spec) on a fresh event loop until it has drained."""
    asyncio.run(serve(spec))


def add_server_arguments(parser: argparse.ArgumentParser, port: int, workers_help: str) -> argparse.ArgumentParser:
    """The options every threaded ECGLens server takes: --host, --port, --port-file, --workers, --log-level."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"TCP port; 0 picks a free one (default {port})")
    parser.add_argument("--port-file", default=None, help="write the bound port here once SERVING")
    parser.add_argument("--workers", type=int, default=4, help=f"{workers_help} (default 4)")
    parser.add_argument("--drain-seconds", type=float, default=1.0,
                        help="after SIGTERM: seconds health says NOT_SERVING and new calls get UNAVAILABLE "
                             "'draining' before the listener closes (default 1)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def serve_threaded(add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: object, service_name: str,
                   args: argparse.Namespace) -> None:
    """Serve one synchronous servicer as add_server_arguments' args say, until SIGTERM/SIGINT."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_blocking(ServerSpec(
        services=[service_name], register=lambda server, pool: add_to_server(threaded(servicer, pool), server),
        host=args.host, port=args.port, port_file=args.port_file, max_workers=args.workers,
        drain_s=args.drain_seconds))
