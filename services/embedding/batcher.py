"""Dynamic batching after Triton: coalesce concurrent requests up to max_batch_size within a delay.

Waiting for batch-mates ("lingering") is a bet that more requests are about to arrive. A runner stops
betting after FRUITLESS_LINGERS lingers in a row found nobody (a client with a few requests in flight
sends the next only after a reply, so its requests never meet, and each linger would add the whole
delay to every request), and bets again as soon as requests are seen to bunch up in the queue.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


FRUITLESS_LINGERS = 2  # lingers in a row that found no batch-mate before runners stop lingering


class QueueFull(RuntimeError):
    """The bounded queue cannot take this request now (answered as RESOURCE_EXHAUSTED)."""


class Draining(RuntimeError):
    """The batcher is shutting down and takes no new work (answered as UNAVAILABLE)."""


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """Observations handed to a metrics callback after each batch."""

    size: int
    requests: int
    queue_seconds: list[float]
    infer_seconds: float
    queued_ecgs: int = 0


class DynamicBatcher:
    """Runs `infer` on coalesced batches in one worker thread; one batcher per model per process."""

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], max_batch_size: int,
                 max_queue_delay_s: float, max_queue_ecgs: int,
                 on_batch: Callable[[BatchStats], None] | None = None, runners: int = 1) -> None:
        if runners < 1:
            raise ValueError("a batcher needs at least one runner")
        self._infer = infer
        self.runners = runners
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_ecgs = max_queue_ecgs
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._queued_ecgs = 0
        self._draining = False
        self._busy = 0
        self._idle = 0  # runners waiting for the first request of their next batch
        self._fruitless = 0  # lingers in a row that found no batch-mate (shared by the runners)
        # One inference thread per runner. One runner: the backend parallelises inside a batch (intra-op
        # threads). Several: batches run side by side (as Triton's instance groups), each on fewer threads,
        # which on a small CPU keeps every core busy while another batch is being received or answered.
        self._executor = concurrent.futures.ThreadPoolExecutor(runners, thread_name_prefix="infer")
        self._workers: list[asyncio.Task] = []

    @property
    def queued_ecgs(self) -> int:
        """ECGs waiting (not yet in a running batch)."""
        return self._queued_ecgs

    def start(self) -> None:
        """Start the workers (one per runner) on the running loop."""
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._run()) for _ in range(self.runners)]

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Embed [B, L, T]: split into chunks of max_batch_size, queue them, reassemble in order."""
        if self._draining:
            raise Draining("server is shutting down")
        if self._queued_ecgs + len(x) > self.max_queue_ecgs:
            raise QueueFull(f"queue holds {self._queued_ecgs} ECGs; adding {len(x)} would pass the limit of "
                            f"{self.max_queue_ecgs}; retry later")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(x), self.max_batch_size):
            chunk = x[start:start + self.max_batch_size]
            item = _Item(chunk, loop.create_future())
            self._queued_ecgs += len(chunk)
            self._queue.put_nowait(item)
            futures.append(item.future)
        if len(futures) == 1:  # the common case: no gather (and the task it wraps) per request
            return await futures[0]
        return np.concatenate(await asyncio.gather(*futures))

    async def _next_batch(self) -> list[_Item]:
        """Wait for one item, then gather more until full or the queue delay has passed."""
        self._idle += 1
        try:
            first = await self._queue.get()
        finally:
            self._idle -= 1
        items, size = [first], len(first.x)
        deadline = time.perf_counter() + self.max_queue_delay_s
        while size < self.max_batch_size:
            try:
                nxt = self._queue.get_nowait()
                self._fruitless = 0  # requests are bunching up: batch-mates are worth waiting for again
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                # Lingering for batch-mates only pays while every other runner is busy: an idle one would
                # take the next request at once, and this batch would wait out the delay for nothing. (A runner
                # that frees up while this one lingers does not cut the wait short: that costs at most the delay.)
                # Nor does it pay while lingers keep finding nobody (see the module docstring).
                if remaining <= 0 or self._idle or self._fruitless >= FRUITLESS_LINGERS:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    self._fruitless += 1
                    break
                self._fruitless = 0
            if size + len(nxt.x) > self.max_batch_size:
                # Never split a chunk across batches: put it back at the front for the next batch.
                self._requeue_front(nxt)
                break
            items.append(nxt)
            size += len(nxt.x)
        return items

    def _requeue_front(self, item: _Item) -> None:
        rest = [item]
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        for queued in rest:
            self._queue.put_nowait(queued)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._next_batch()
            sizes = [len(i.x) for i in items]
            self._queued_ecgs -= sum(sizes)
            live = [i for i in items if not i.future.cancelled()]
            if not live:
                continue
            batch = live[0].x if len(live) == 1 else np.concatenate([i.x for i in live])
            started = time.perf_counter()
            self._busy += 1
            try:
                out = await loop.run_in_executor(self._executor, self._infer, batch)
            except Exception as err:  # the backend's failure belongs to every request of the batch
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            finally:
                self._busy -= 1
            finished = time.perf_counter()
            offset = 0
            for item in live:
                n = len(item.x)
                if not item.future.done():
                    item.future.set_result(out[offset:offset + n])
                offset += n
            if self._on_batch:
                self._on_batch(BatchStats(len(batch), len(live), [started - i.enqueued for i in live],
                                          finished - started, self._queued_ecgs))

    async def drain(self) -> None:
        """Refuse new work and wait until everything queued has been answered."""
        self._draining = True
        while self._busy or self._queued_ecgs > 0 or not self._queue.empty():
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop the workers and their threads."""
        for worker in self._workers:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)
