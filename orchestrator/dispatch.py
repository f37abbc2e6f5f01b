"""Embedding on Ray: reading/preprocessing in Ray tasks, endpoint calls from Ray actors.

Per model, one actor per endpoint replica holds a gRPC channel and serves at most `in_flight`
calls at once (backpressure); the driver keeps at most that many batches outstanding per replica,
retries UNAVAILABLE/DEADLINE_EXCEEDED with backoff inside the actor, fails over to another replica
when one stays unreachable, and bisects a batch the server rejects so one bad record loses
only itself. Every finished batch goes straight to the cache.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import ray

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import DatasetSpec, RecordError, open_dataset
from orchestrator.preprocess import PreprocessSpec, preprocess_windows
from orchestrator.server_host import address_of

log = logging.getLogger(__name__)
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
MAX_BUSY_RETRIES = 8
# A batch whose worker or data was lost with a node is read and sent again, this often, after 1, 2, 4, 8, 16 s:
# long enough for Ray to notice the node is gone (missed heartbeats) and restart the worker elsewhere.
MAX_REREADS = 5


@dataclass
class RecordProblem:
    """A record that produced no embedding, and why."""

    dataset: str
    record: str
    stage: str
    reason: str
    model: str = ""

    def to_dict(self) -> dict:
        """As in results.json `errors`."""
        return {"dataset": self.dataset, "record": self.record, "stage": self.stage, "model": self.model,
                "reason": self.reason}


@ray.remote(num_returns=2)
def read_batch(spec: DatasetSpec, indices: list[int], prep: PreprocessSpec) -> tuple[dict, np.ndarray]:
    """Read and preprocess records; returns ({ids, counts, problems}, [windows, L, T] float32) as two objects.

    counts[k] is how many consecutive windows belong to ids[k] (1 unless prep.window == "average").
    """
    dataset = open_dataset(spec)
    ids, counts, rows, problems = [], [], [], []
    for i in indices:
        rid = dataset.meta(i).record_id
        try:
            wins, filled = preprocess_windows(dataset.load(i), prep)
        except RecordError as err:
            problems.append((rid, "read", str(err)))
            continue
        except Exception as err:  # a corrupt file must cost one record, not the run
            problems.append((rid, "read", f"{type(err).__name__}: {err}"))
            continue
        if filled:
            problems.append((rid, "warning", f"lead(s) {', '.join(filled)} missing: zero-filled"))
        ids.append(rid)
        counts.append(len(wins))
        rows.append(wins)
    x = np.concatenate(rows) if rows else np.zeros((0, len(prep.leads), prep.num_samples), np.float32)
    return {"ids": ids, "counts": counts, "problems": problems}, x


def average_windows(emb: np.ndarray, counts: list[int]) -> np.ndarray:
    """Mean embedding per record over its consecutive windows."""
    if all(c == 1 for c in counts):
        return emb
    bounds = np.cumsum([0, *counts])
    return np.stack([emb[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])


# A worker lost with its node is restarted elsewhere and its calls in flight are sent again (embedding is
# idempotent: a repeated batch writes the same shard). Its methods never raise on RPC errors, so these
# retries only ever happen on a lost process or node.
WORKER_OPTIONS = {"max_restarts": 4, "max_task_retries": 4}


@ray.remote(**WORKER_OPTIONS)
class EndpointWorker:
    """One endpoint replica: a gRPC channel (ECGLens or V2 protocol, TLS, token) and bounded retries.

    With `host` (a ServerHost actor: the replica was launched on a cluster node), a replica that stops
    answering is looked up again: after a node loss its host restarts elsewhere with a new address.
    """

    def __init__(self, address: str, connection: dict, timeout_s: float = 120.0, attempts: int = 3,
                 host: object = None) -> None:
        self.connection, self.timeout_s, self.attempts, self.host = connection, timeout_s, attempts, host
        self.client = None
        self._lock = threading.Lock()  # calls run concurrently (max_concurrency); one reconnects at a time
        self._connect(self._current(address))

    def _current(self, address: str) -> str:
        """The replica's address now: asked of its host when it has one (it may have moved)."""
        return address if self.host is None else address_of(self.host, address, self.timeout_s)

    def _connect(self, address: str) -> None:
        from orchestrator.endpoints import EndpointError, open_client

        if self.client is not None:
            self.client.close()
        self.address, self.error, self.client = address, None, None
        try:
            self.client, _ = open_client(address, self.connection, self.timeout_s)
        except EndpointError as err:
            self.error = str(err)

    def _moved(self) -> bool:
        """Reconnect when the replica's host now serves at another address; whether it did."""
        if self.host is None:
            return False
        with self._lock:
            seen = self.address
            address = self._current(seen)
            if address == seen:
                return False
            if address != self.address:  # another call may have reconnected meanwhile
                log.warning("replica moved from %s to %s (its node was lost); reconnecting", seen, address)
                self._connect(address)
            return self.error is None

    def embed(self, x: np.ndarray, request_id: str) -> tuple[str, object]:
        """('ok', embeddings) or (status name, message) after retries; never raises on RPC errors."""
        from services.embedding.client import EmbedError

        if self.error and not self._moved():
            return "UNAVAILABLE", self.error
        delay, moves, attempt = 0.2, 0, 0
        while True:
            try:
                return "ok", self.client.embed(x, request_id)
            except EmbedError as err:
                code = err.code.name
                if code not in RETRYABLE:
                    return code, f"{self.address}: {err.details}"
                attempt += 1
                if attempt >= self.attempts:
                    # Out of attempts: when the replica moved (its node was lost), start over at its new address.
                    if code == "UNAVAILABLE" and moves < 2 and self._moved():
                        moves, attempt, delay = moves + 1, 0, 0.2
                        continue
                    return code, f"{self.address}: {err.details}"
                time.sleep(delay)
                delay *= 2


@dataclass
class _Batch:
    ids: list[str]
    counts: list[int]  # windows per record
    x: object  # ObjectRef or ndarray, [sum(counts), L, T]
    attempts: int = 0


@dataclass
class EmbedJob:
    """Embedding of one dataset by one model, over its replicas."""

    model: str
    replicas: list[str]
    dataset: DatasetSpec
    dataset_name: str
    prep: PreprocessSpec
    cache: EmbeddingCache
    batch_size: int = 32
    in_flight: int = 2
    timeout_s: float = 120.0
    connection: dict = field(default_factory=dict)
    hosts: dict = field(default_factory=dict)  # replica address -> ServerHost actor (launched on a cluster)
    problems: list[RecordProblem] = field(default_factory=list)


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (Ray's carry whole tracebacks)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _halves(batch: _Batch) -> list[_Batch]:
    """Split a batch by records (with their windows) into two."""
    x = ray.get(batch.x) if not isinstance(batch.x, np.ndarray) else batch.x
    half = len(batch.ids) // 2
    split = sum(batch.counts[:half])
    return [_Batch(batch.ids[:half], batch.counts[:half], x[:split]),
            _Batch(batch.ids[half:], batch.counts[half:], x[split:])]


def run_embed_job(job: EmbedJob, indices: list[int], record_ids: list[str],
                  progress: Callable[[int], None] | None = None) -> list[RecordProblem]:
    """Embed every index whose record is not yet cached; return the records that could not be embedded."""
    done = job.cache.done_ids()
    todo = [i for i, rid in zip(indices, record_ids) if rid not in done]
    if progress and len(indices) - len(todo):
        progress(len(indices) - len(todo))
    if not todo:
        return []
    workers = {addr: EndpointWorker.options(max_concurrency=job.in_flight).remote(
        addr, job.connection, job.timeout_s, host=job.hosts.get(addr)) for addr in job.replicas}
    alive = list(job.replicas)
    load = {addr: 0 for addr in alive}
    chunks = deque(todo[k:k + job.batch_size] for k in range(0, len(todo), job.batch_size))
    reads: dict = {}
    ready: deque[_Batch] = deque()
    calls: dict = {}
    problems: list[RecordProblem] = []
    max_reads = 2 * job.in_flight * len(alive)
    rid_of = dict(zip(indices, record_ids))
    index_of = dict(zip(record_ids, indices))
    rereads: dict[tuple[str, ...], int] = {}
    deferred: list = []  # heap of (due time, tie-break, indices): batches to read again after a node loss
    order = itertools.count()

    def fail(ids: list[str], stage: str, reason: str) -> None:
        problems.extend(RecordProblem(job.dataset_name, rid, stage, reason, job.model) for rid in ids)
        if progress:
            progress(len(ids))

    try:
        while chunks or reads or ready or calls or deferred:
            now = time.monotonic()
            while deferred and deferred[0][0] <= now:
                chunks.appendleft(heapq.heappop(deferred)[2])
            while chunks and len(reads) + len(ready) < max_reads:
                chunk = chunks.popleft()
                meta_ref, x_ref = read_batch.remote(job.dataset, chunk, job.prep)
                reads[meta_ref] = (x_ref, chunk)
            while ready and alive:
                target = min(alive, key=load.get)
                if load[target] >= job.in_flight:
                    break
                batch = ready.popleft()
                ref = workers[target].embed.remote(batch.x, f"{job.model}:{batch.ids[0]}:{len(batch.ids)}")
                calls[ref] = (batch, target, workers[target])
                load[target] += 1
            if ready and not alive:
                while ready:
                    fail(ready.popleft().ids, "embed", f"no reachable replica of {job.model}")
                continue
            pending = list(reads) + list(calls)
            wake = max(0.0, deferred[0][0] - time.monotonic()) if deferred else None
            if not pending:
                time.sleep(wake or 0.0)
                continue
            finished, _ = ray.wait(pending, num_returns=1, timeout=wake)
            if not finished:
                continue
            ref = finished[0]
            if ref in reads:
                x_ref, chunk = reads.pop(ref)
                try:
                    meta = ray.get(ref)
                except ray.exceptions.RayError as err:  # Ray already retried it (max_retries): its node is gone
                    fail([rid_of[i] for i in chunk], "read", f"read task lost after retries: {_first_line(err)}")
                    continue
                for rid, stage, reason in meta["problems"]:
                    if stage == "warning":
                        problems.append(RecordProblem(job.dataset_name, rid, stage, reason, job.model))
                    else:
                        fail([rid], stage, reason)
                if meta["ids"]:
                    ready.append(_Batch(meta["ids"], meta["counts"], x_ref))
                continue
            batch, target, worker = calls.pop(ref)
            load[target] -= 1
            try:
                status, value = ray.get(ref)
            except ray.exceptions.RayError as err:
                # The worker or the batch's data was lost beyond Ray's own retries (a node went away): the
                # replica's worker is dropped; the records are read again and sent elsewhere, a bounded
                # number of times, so a run always ends and loses only what truly cannot be done.
                log.warning("embedding call on %s lost (%s); reading its %d record(s) again",
                            target, _first_line(err), len(batch.ids))
                if isinstance(err, ray.exceptions.ActorDiedError) and workers[target] is worker:
                    # Its restarts are used up (or cannot happen): a fresh worker for the same replica. The
                    # replica itself may be fine; only a failing endpoint takes a replica out of `alive`.
                    workers[target] = EndpointWorker.options(max_concurrency=job.in_flight).remote(
                        target, job.connection, job.timeout_s, host=job.hosts.get(target))
                key = tuple(batch.ids)
                rereads[key] = rereads.get(key, 0) + 1
                if rereads[key] > MAX_REREADS:
                    fail(batch.ids, "embed", f"lost {MAX_REREADS + 1} times with Ray nodes: {_first_line(err)}")
                else:
                    heapq.heappush(deferred, (time.monotonic() + 2 ** (rereads[key] - 1), next(order),
                                              [index_of[rid] for rid in batch.ids]))
                continue
            if status == "ok":
                job.cache.write(batch.ids, average_windows(value, batch.counts))
                if progress:
                    progress(len(batch.ids))
            elif status in RETRYABLE and status != "RESOURCE_EXHAUSTED":
                log.warning("replica %s of %s failed (%s: %s); failing over", target, job.model, status, value)
                if target in alive:
                    alive.remove(target)
                batch.attempts += 1
                ready.appendleft(batch)
            elif status == "RESOURCE_EXHAUSTED" and "larger than max" in str(value) and len(batch.ids) > 1:
                # The endpoint's message-size limit (gRPC's default is 4 MB): send smaller requests.
                ready.extendleft(reversed(_halves(batch)))
            elif status == "RESOURCE_EXHAUSTED" and batch.attempts < MAX_BUSY_RETRIES:
                # The endpoint's queue is full: back off, then try again (bounded, so a run always ends).
                batch.attempts += 1
                ready.append(batch)
                time.sleep(min(0.2 * 2 ** batch.attempts, 5.0))
            elif status == "INVALID_ARGUMENT" and len(batch.ids) > 1:
                # Bisect so the record the server rejects is found and only it is lost.
                ready.extendleft(reversed(_halves(batch)))
            else:
                fail(batch.ids, "embed", f"{status}: {value}")
    finally:
        for worker in workers.values():
            ray.kill(worker)
    return problems
