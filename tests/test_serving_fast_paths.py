"""The serving fast paths hold to the slow paths they replace: wire bytes, side-by-side runners, malloc tuning."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from protos.ecglens.v1 import embedding_pb2
from services.common.memory import reuse_large_buffers
from services.common.tensors import TensorError, encode_tensor_message, from_tensor, to_tensor
from services.embedding.backends.onnx_backend import plan_threads
from services.embedding.batcher import FRUITLESS_LINGERS, DynamicBatcher

SHAPES = [(1, 12, 5000), (3, 1, 7), (0, 12, 5000), (2, 0), (), (1,), (300, 2), (1, 1, 2 ** 14 + 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("request_id", ["", "a", "ß-id-" + "x" * 200])
def test_encoded_request_is_byte_for_byte_the_protobuf_serialisation(shape, dtype, request_id):
    x = np.random.default_rng(len(shape)).normal(0, 1, shape).astype(np.float32)
    expected = embedding_pb2.EmbedRequest(request_id=request_id, ecg=to_tensor(x, dtype)).SerializeToString()
    assert encode_tensor_message(request_id, x, dtype) == expected


def test_encoded_request_of_a_strided_float64_view_parses_back_to_the_same_samples():
    x = np.random.default_rng(1).normal(0, 1, (4, 12, 100))[:, ::2, ::3]  # float64, not contiguous
    parsed = embedding_pb2.EmbedRequest.FromString(encode_tensor_message("r", x))
    assert parsed.request_id == "r"
    np.testing.assert_array_equal(from_tensor(parsed.ecg), x.astype(np.float32))


def test_encoder_refuses_an_unsupported_dtype():
    with pytest.raises(TensorError):
        encode_tensor_message("r", np.zeros(3), "int8")


def test_thread_plan_runs_two_batches_side_by_side_only_in_a_cpu_server(monkeypatch):
    monkeypatch.delenv("ECGLENS_ORT_RUNNERS", raising=False)
    monkeypatch.delenv("ECGLENS_ORT_THREADS", raising=False)
    cpu = ["CPUExecutionProvider"]
    assert plan_threads(cpu, in_process=True, cpus=2) == (1, 0)  # a library caller keeps ORT's defaults
    assert plan_threads(cpu, in_process=False, cpus=2) == (2, 1)
    assert plan_threads(cpu, in_process=False, cpus=16) == (2, 8)
    assert plan_threads(cpu, in_process=False, cpus=1) == (1, 0)
    assert plan_threads(["CUDAExecutionProvider", *cpu], in_process=False, cpus=8) == (1, 0)
    monkeypatch.setenv("ECGLENS_ORT_RUNNERS", "1")
    monkeypatch.setenv("ECGLENS_ORT_THREADS", "3")
    assert plan_threads(cpu, in_process=False, cpus=2) == (1, 3)


class _Recorder:
    """An infer function that records the batches it saw and how many ran at once."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s, self.lock = hold_s, threading.Lock()
        self.running = self.most = 0
        self.batches: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.batches.append(len(x))
        time.sleep(self.hold_s)
        with self.lock:
            self.running -= 1
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True) * np.ones((1, 3), np.float32)


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))  # a guard against a hang, not a speed limit


@pytest.mark.parametrize("runners", [1, 2, 3])
def test_every_request_gets_its_own_rows_whatever_the_runners(runners):
    infer = _Recorder(hold_s=0.01)
    x = np.random.default_rng(0).normal(0, 1, (40, 2, 5)).astype(np.float32)
    expected = infer(x)

    async def main():
        batcher = DynamicBatcher(infer, 4, 0.005, 1000, runners=runners)
        batcher.start()
        parts = await asyncio.gather(*(batcher.submit(x[i:i + n]) for i, n in ((0, 1), (1, 7), (8, 3), (11, 29))))
        await batcher.drain()
        await batcher.close()
        return np.concatenate(parts)

    np.testing.assert_array_equal(_run(main()), expected)
    assert max(infer.batches[1:]) <= 4


def test_two_runners_run_batches_side_by_side():
    infer = _Recorder(hold_s=0.2)

    async def main():
        batcher = DynamicBatcher(infer, 1, 0.0, 1000, runners=2)
        batcher.start()
        await asyncio.gather(*(batcher.submit(np.ones((1, 2, 2), np.float32)) for _ in range(4)))
        await batcher.close()

    _run(main())
    assert infer.most == 2


def test_a_batch_does_not_linger_for_mates_while_another_runner_is_idle():
    # A one-hour delay: lingering would hang until the guard fails the test.
    async def main():
        batcher = DynamicBatcher(_Recorder(), 32, 3600.0, 1000, runners=2)
        batcher.start()
        await asyncio.sleep(0)  # both runners reach the queue, as they have long before a server's first call
        out = await batcher.submit(np.ones((1, 2, 2), np.float32))
        await batcher.close()
        return out

    assert _run(main()).shape == (1, 3)


def test_one_runner_still_lingers_to_coalesce():
    infer = _Recorder()

    async def main():
        batcher = DynamicBatcher(infer, 8, 0.5, 1000, runners=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 2, 2), np.float32)))
        await asyncio.sleep(0)
        await asyncio.gather(first, *(batcher.submit(np.ones((1, 2, 2), np.float32)) for _ in range(3)))
        await batcher.close()

    _run(main())
    assert infer.batches == [4]


def test_lingering_stops_while_it_finds_nobody_and_resumes_when_requests_bunch():
    infer = _Recorder()
    one = np.ones((1, 2, 2), np.float32)

    async def main():
        batcher = DynamicBatcher(infer, 8, 0.02, 1000, runners=1)
        batcher.start()
        for _ in range(FRUITLESS_LINGERS):  # one request at a time: each linger waits out the delay alone
            await batcher.submit(one)
        # Now a one-hour delay: a runner that still lingered would hang until the guard fails the test.
        batcher.max_queue_delay_s = 3600.0
        await batcher.submit(one)
        # Requests bunching up in the queue (the runner finds one behind the first) make lingering pay again...
        batcher.max_queue_delay_s = 0.5
        await asyncio.gather(*(batcher.submit(one) for _ in range(2)))
        # ... so a lone request waits for the mates that follow it, as a fresh batcher's would.
        first = asyncio.ensure_future(batcher.submit(one))
        await asyncio.sleep(0)
        await asyncio.gather(first, *(batcher.submit(one) for _ in range(3)))
        await batcher.close()

    _run(main())
    assert infer.batches == [1] * FRUITLESS_LINGERS + [1, 2, 4]


def test_malloc_tuning_is_applied_once_and_reports_the_same_answer():
    first = reuse_large_buffers()
    assert isinstance(first, bool)
    assert reuse_large_buffers() is first
