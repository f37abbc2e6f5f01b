"""Prometheus metrics of the embedding server, exposed on their own port (as Triton and MLServer do).

The endpoint binds to loopback unless told otherwise, serves TLS with the gRPC server's certificate
when it has one, and can ask for the same bearer token as the gRPC calls.
"""
from __future__ import annotations

import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.embedding.batcher import BatchStats
from services.embedding.security import bearer_matches

log = logging.getLogger("ecglens.metrics")


class ServerMetrics:
    """Requests, rejections, batch sizes, queue time and inference time for one model."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        self.model = model
        self.requests = Counter("ecglens_requests", "Requests by method and gRPC code (rejections included)",
                                ["model", "method", "code"], registry=self.registry)
        self.auth_failures = Counter("ecglens_auth_failures", "Calls refused for a missing or wrong bearer token",
                                     ["model", "method"], registry=self.registry)
        self.ecgs = Counter("ecglens_ecgs", "ECGs embedded", ["model"], registry=self.registry)
        self.batch_size = Histogram("ecglens_batch_size", "ECGs per executed batch", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.queue_seconds = Histogram("ecglens_queue_seconds", "Time a request waited for its batch", ["model"],
                                       registry=self.registry)
        self.infer_seconds = Histogram("ecglens_inference_seconds", "Backend time per batch", ["model"],
                                       registry=self.registry)
        self.queue_depth = Gauge("ecglens_queue_ecgs", "ECGs waiting in the batcher", ["model"],
                                 registry=self.registry)
        self.budget_bytes = Gauge("ecglens_request_budget_bytes", "Memory budget for requests in flight", ["model"],
                                  registry=self.registry)
        self.budget_used = Gauge("ecglens_request_budget_used_bytes", "Bytes of the budget reserved now", ["model"],
                                 registry=self.registry)
        self._server: ThreadingHTTPServer | None = None
        # Every request passes here: look each labelled series up once (labels() hashes and locks per call).
        self._batch = (self.batch_size.labels(model), self.infer_seconds.labels(model), self.ecgs.labels(model),
                       self.queue_depth.labels(model), self.queue_seconds.labels(model))
        self._requests: dict[tuple[str, str], Counter] = {}

    def observe_batch(self, stats: BatchStats) -> None:
        """Record one executed batch."""
        batch_size, infer_seconds, ecgs, queue_depth, queue_seconds = self._batch
        batch_size.observe(stats.size)
        infer_seconds.observe(stats.infer_seconds)
        ecgs.inc(stats.size)
        queue_depth.set(stats.queued_ecgs)
        for waited in stats.queue_seconds:
            queue_seconds.observe(waited)

    def count(self, method: str, code: str) -> None:
        """Count one finished RPC (or one reply of a stream)."""
        series = self._requests.get((method, code))
        if series is None:  # a handful of (method, code) pairs: the cache stays small
            series = self._requests[method, code] = self.requests.labels(self.model, method, code)
        series.inc()

    def count_auth_failure(self, method: str) -> None:
        """Count one call refused as UNAUTHENTICATED (also in ecglens_requests_total)."""
        self.auth_failures.labels(self.model, method).inc()
        self.count(method, "UNAUTHENTICATED")

    def track_budget(self, budget) -> None:
        """Export a RequestBudget's limit and, at each scrape, its reserved bytes."""
        self.budget_bytes.labels(self.model).set(budget.limit)
        self.budget_used.labels(self.model).set_function(lambda: budget.used)

    def serve(self, port: int, host: str = "127.0.0.1", token: str | None = None,
              tls: ssl.SSLContext | None = None) -> int:
        """Start the /metrics endpoint (HTTPS with tls, bearer token when given); return the bound port."""
        registry, expected = self.registry, token.encode() if token else None

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # seconds a client may take per read: idle connections do not pile up

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if expected is not None and not bearer_matches(self.headers.get("Authorization"), expected):
                    log.warning("metrics: authentication failed", extra={"peer": self.client_address[0]})
                    self._reply(401, b"missing or wrong bearer token\n", "text/plain",
                                {"WWW-Authenticate": "Bearer"})
                    return
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self._reply(404, b"not found; see /metrics\n", "text/plain")
                    return
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)

            def _reply(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes every few seconds: not worth a log line each
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        if tls is not None:
            # The handshake happens in the request's thread, so a client that never finishes it blocks nobody.
            server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        self._server = server
        return int(server.server_address[1])
