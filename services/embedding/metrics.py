"""Prometheus metrics of the embedding server, exposed on their own port (as Triton and MLServer do)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from services.embedding.batcher import BatchStats


class ServerMetrics:
    """Requests, batch sizes, queue time and inference time for one model."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        self.model = model
        self.requests = Counter("ecglens_requests", "Embed requests by method and gRPC code",
                                ["model", "method", "code"], registry=self.registry)
        self.ecgs = Counter("ecglens_ecgs", "ECGs embedded", ["model"], registry=self.registry)
        self.batch_size = Histogram("ecglens_batch_size", "ECGs per executed batch", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.queue_seconds = Histogram("ecglens_queue_seconds", "Time a request waited for its batch", ["model"],
                                       registry=self.registry)
        self.infer_seconds = Histogram("ecglens_inference_seconds", "Backend time per batch", ["model"],
                                       registry=self.registry)
        self.queue_depth = Gauge("ecglens_queue_ecgs", "ECGs waiting in the batcher", ["model"],
                                 registry=self.registry)

    def observe_batch(self, stats: BatchStats) -> None:
        """Record one executed batch."""
        self.batch_size.labels(self.model).observe(stats.size)
        self.infer_seconds.labels(self.model).observe(stats.infer_seconds)
        self.ecgs.labels(self.model).inc(stats.size)
        self.queue_depth.labels(self.model).set(stats.queued_ecgs)
        for waited in stats.queue_seconds:
            self.queue_seconds.labels(self.model).observe(waited)

    def count(self, method: str, code: str) -> None:
        """Count one finished RPC."""
        self.requests.labels(self.model, method, code).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint; return the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
