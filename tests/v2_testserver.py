"""An ECGLens embedding server with its V2 face, for tests until server.py registers it itself.

Builds the servicer and batcher exactly as services/embedding/server.py does (its own _load), then
serves ecglens.v1, the V2 GRPCInferenceService, health and reflection on one port.
Run: python tests/v2_testserver.py --model PACKAGE --port-file F
"""
from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.ecglens.v1 import embedding_pb2_grpc
from services.common.grpc_options import SERVER_OPTIONS
from services.common.process import write_port_file
from services.embedding import server as embedding_server
from services.embedding.card import load_card
from services.embedding.metrics import ServerMetrics
from services.embedding.v2_servicer import add_v2_to_server


async def serve(package: Path, port_file: str) -> None:
    """Bind, publish the port, load the model, flip health to SERVING, run until SIGTERM."""
    metrics = ServerMetrics(load_card(package).name)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    servicer = embedding_server.EmbeddingServicer(metrics)
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
    v2_names = add_v2_to_server(server, servicer)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([embedding_server.SERVICE, *v2_names, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    write_port_file(port_file, port)
    await embedding_server._load(servicer, package, metrics)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)
    await servicer.batcher.drain()
    await servicer.batcher.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="model package directory")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    asyncio.run(serve(Path(args.model), args.port_file))
