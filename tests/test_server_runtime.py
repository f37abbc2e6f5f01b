"""services.common.runtime, the one bootstrap of every server: health after warm-up, threaded abort, drain."""
from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.ecglens.v1 import probing_pb2, probing_pb2_grpc
from services.common.runtime import ServerSpec, serve, threaded

SERVICE = "ecglens.v1.ProbingService"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class Refusing(probing_pb2_grpc.ProbingServiceServicer):
    """A blocking servicer that aborts; code after abort() must never run (as on grpc.server)."""

    def __init__(self) -> None:
        self.ran_past_abort = False

    def Evaluate(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no {request.request_id}")
        self.ran_past_abort = True
        return probing_pb2.EvaluateResponse(request_id="should not be sent")


async def _port(port_file: Path, task: asyncio.Task) -> int:
    """The published port, once the server wrote it (fails fast if serve() died)."""
    while not port_file.exists():
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return int(port_file.read_text())


async def _health(channel: grpc.aio.Channel, service: str = "") -> int:
    return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))).status


def test_health_turns_serving_only_after_warm_up_and_not_serving_on_drain(tmp_path):
    released, drained = asyncio.Event(), []

    async def main() -> None:
        stop = asyncio.Event()

        async def on_stopped() -> None:
            drained.append(True)

        spec = ServerSpec(services=[SERVICE], register=lambda server, pool: None, port_file=str(tmp_path / "port"),
                          grace_s=1, warm_up=released.wait, on_stopped=on_stopped)
        task = asyncio.ensure_future(serve(spec, stop))
        port = await _port(tmp_path / "port", task)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await _health(channel) == NOT_SERVING
            assert await _health(channel, SERVICE) == NOT_SERVING
            released.set()
            for _ in range(500):
                if await _health(channel, SERVICE) == SERVING:
                    break
                await asyncio.sleep(0.01)
            assert await _health(channel) == SERVING
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert drained == [True]


def test_a_threaded_abort_ends_the_call_and_the_handler(tmp_path):
    servicer = Refusing()

    async def main() -> tuple[grpc.StatusCode, str]:
        stop = asyncio.Event()
        spec = ServerSpec(services=[SERVICE], port_file=str(tmp_path / "port"), grace_s=1, max_workers=2,
                          register=lambda server, pool: probing_pb2_grpc.add_ProbingServiceServicer_to_server(
                              threaded(servicer, pool), server))
        task = asyncio.ensure_future(serve(spec, stop))
        port = await _port(tmp_path / "port", task)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert await _health(channel, SERVICE) == SERVING  # no warm-up: SERVING before the port file
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await probing_pb2_grpc.ProbingServiceStub(channel).Evaluate(
                        probing_pb2.EvaluateRequest(request_id="r1"), timeout=10)
                return err.value.code(), err.value.details()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    code, details = asyncio.run(main())
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "no r1")
    assert not servicer.ran_past_abort
