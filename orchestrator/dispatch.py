"""Embedding on Ray: per endpoint replica, `in_flight` actors each read, preprocess and send their own batches.

The driver hands workers index chunks only. A worker opens the dataset once and holds a gRPC channel; it has
one call on the wire at a time and reads READ_AHEAD more chunks meanwhile on other threads (numpy and gRPC
release the GIL), so reading, transport and compute overlap, reading runs in as many processes as calls may be
in flight, and a batch's samples never pass through Ray's object store: only ids and the (averaged) embeddings
come back. At most `in_flight` calls per replica are on the wire (backpressure). A worker retries
UNAVAILABLE/DEADLINE_EXCEEDED with backoff; the driver fails over to another replica when one stays
unreachable, halves a batch over the message-size limit, and bisects a batch the server rejects so one bad
record loses only itself, each by sending index chunks again (records are read again: reading is
deterministic, and a warning already reported is not reported twice). Every finished batch goes straight to
the cache. Workers come from a WorkerPool (orchestrator/worker_pool.py): a run's pool serves all its jobs, so a
worker's start-up is paid once per run; the dataset and preprocessing travel with each call.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import ray

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import Dataset, DatasetSpec, RecordError, open_dataset
from orchestrator.preprocess import PreprocessSpec, preprocess_windows
from orchestrator.server_host import address_of
from orchestrator.worker_pool import WorkerPool, actor_identity, connection_identity, pool_or_own

log = logging.getLogger(__name__)
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
MAX_BUSY_RETRIES = 8
# A batch whose worker or data was lost with a node is read and sent again, this often, after 1, 2, 4, 8, 16 s:
# long enough for Ray to notice the node is gone (missed heartbeats) and restart the worker elsewhere.
MAX_REREADS = 5
# Chunks each worker may be reading while its call is on the wire: the next batch is ready when the call
# returns, so the endpoint never waits for a read.
READ_AHEAD = 1
# Datasets a worker keeps open (least recently used dropped): a pooled worker serves one job after another, and a
# run embeds dataset after dataset, so memory stays that of a few datasets, not of every one the run saw.
OPEN_DATASETS = 2


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


def read_records(dataset: Dataset, indices: list[int], prep: PreprocessSpec) -> tuple[dict, np.ndarray]:
    """Read and preprocess records: ({ids, counts, problems}, [windows, L, T] float32).

    counts[k] is how many consecutive windows belong to ids[k] (1 unless prep.window == "average"); problems
    are (record id, "read" or "warning", reason): a record that cannot be read costs only itself.
    """
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
    answering is looked up again: after a node loss its host restarts elsewhere with a new address. The dataset
    and preprocessing come with each call, so one worker serves job after job (orchestrator/worker_pool.py).
    """

    def __init__(self, address: str, connection: dict, timeout_s: float = 120.0, attempts: int = 3,
                 host: object = None, wire: int = 2) -> None:
        self.connection, self.timeout_s, self.attempts, self.host = connection, timeout_s, attempts, host
        self.origin, self.client, self._job = address, None, ""
        self._datasets: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()  # calls run concurrently (max_concurrency); one reconnects at a time
        self._open_lock = threading.Lock()
        self._wire = threading.BoundedSemaphore(max(1, wire))  # calls on the wire; more threads may be reading
        self._connect(self._current(address))

    def _open(self, spec: DatasetSpec) -> Dataset:
        """A dataset, opened once per worker and kept among the last OPEN_DATASETS (a failed open is retried)."""
        with self._open_lock:
            dataset = self._datasets.get(spec.key)
            if dataset is None:
                dataset = self._datasets[spec.key] = open_dataset(spec)
                while len(self._datasets) > OPEN_DATASETS:
                    self._datasets.popitem(last=False)
            self._datasets.move_to_end(spec.key)
            return dataset

    def _begin(self, job: str) -> None:
        """On a job's first call: connect again if the last attempt failed, as a worker made for the job would."""
        if job == self._job:
            return
        with self._lock:
            if job != self._job:
                if self.error is not None:
                    self._connect(self._current(self.origin))
                self._job = job

    def embed_records(self, spec: DatasetSpec, prep: PreprocessSpec, indices: list[int], tag: str, job: str = "",
                      send: bool = True) -> dict:
        """Read, preprocess and (with `send`) embed records of a dataset here, for the job named `job`.

        Returns {ids, counts, problems} as read_records gives them, with `status` and `value`: ('ok', one
        averaged embedding per id), an RPC status name and message as embed() gives them, ('read', why) when
        the dataset cannot be opened, or ('unsent', '') without `send`. Never raises on read or RPC errors.
        """
        try:
            dataset = self._open(spec)
        except Exception as err:  # reported for every record of the chunk, as a lost read task was
            return {"ids": [], "counts": [], "problems": [], "status": "read",
                    "value": f"cannot open dataset: {_first_line(err)}"}
        started, cpu = time.perf_counter(), time.thread_time()
        meta, x = read_records(dataset, indices, prep)
        timing = {"read_s": time.perf_counter() - started, "read_cpu_s": time.thread_time() - cpu}
        if not send or not meta["ids"]:
            return {**meta, "status": "unsent", "value": "", "timing": timing}
        self._begin(job)
        started = time.perf_counter()
        with self._wire:
            timing["wait_s"] = time.perf_counter() - started
            status, value = self.embed(x, f"{tag}:{meta['ids'][0]}:{len(meta['ids'])}")
        timing["call_s"] = time.perf_counter() - started - timing["wait_s"]
        if status == "ok":
            value = average_windows(value, meta["counts"])
        return {**meta, "status": status, "value": value, "timing": timing}

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
    indices: list[int]  # dataset indices, read by the worker that embeds them
    attempts: int = 0
    read: bool = False  # every index read fine once already (its problems are reported)


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
    # Seconds summed over calls, filled by run_embed_job (for benches and logs): read_s / read_cpu_s (reading and
    # preprocessing in the workers), wait_s (read, waiting for the wire), call_s (on the wire: transport + compute).
    timing: dict = field(default_factory=dict)
    # Worker processes per replica that read (0: `in_flight`, one call on the wire each). Fewer save each one's
    # start-up (a Ray worker, imports: ~1 CPU-s) where CPUs are few; more read in parallel beside a fast endpoint.
    readers: int = 0


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (Ray's carry whole tracebacks)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _halves(batch: _Batch) -> list[_Batch]:
    """Split a batch by records into two (each is read again by the worker that sends it)."""
    half = len(batch.indices) // 2
    return [_Batch(batch.indices[:half], read=True), _Batch(batch.indices[half:], read=True)]


def _per_worker(in_flight: int, readers: int = 0) -> tuple[int, int]:
    """(workers per replica, calls on the wire per worker): `in_flight` calls per replica in all."""
    count = max(1, min(in_flight, readers or in_flight))
    return count, -(-in_flight // count)


def _replica(address: str, connection: dict, timeout_s: float, host: object,
             wire: int) -> tuple[tuple, Callable[[], object]]:
    """(pool key, maker of a fresh worker) for one replica: its calls on the wire, READ_AHEAD more reading."""
    key = (address, connection_identity(connection), actor_identity(host), timeout_s, wire, READ_AHEAD)

    def make() -> object:
        return EndpointWorker.options(max_concurrency=wire + READ_AHEAD).remote(
            address, connection, timeout_s, host=host, wire=wire)
    return key, make


def start_workers(pool: WorkerPool, replicas: list[str], connection: dict, timeout_s: float, hosts: dict,
                  in_flight: int, readers: int = 0) -> None:
    """Start the workers a job with these settings will take from the pool (their start-up overlaps the caller's
    work; nothing waits for them)."""
    count, wire = _per_worker(in_flight, readers)
    for address in replicas:
        key, make = _replica(address, connection, timeout_s, hosts.get(address), wire)
        pool.workers(key, count, make)


def run_embed_job(job: EmbedJob, indices: list[int], record_ids: list[str],
                  progress: Callable[[int], None] | None = None, pool: WorkerPool | None = None) -> list[RecordProblem]:
    """Embed every index whose record is not yet cached; return the records that could not be embedded.

    Workers come from `pool` (a run's, reused job after job) or, without one, from a pool of this job's own that
    is closed (its workers killed) before returning.
    """
    done = job.cache.done_ids()
    todo = [i for i, rid in zip(indices, record_ids) if rid not in done]
    if progress and len(indices) - len(todo):
        progress(len(indices) - len(todo))
    if not todo:
        return []
    # `in_flight` workers per replica, each with one call on the wire: reading runs in as many processes as
    # calls may be in flight (as many as the old read tasks), not in threads of one process behind its GIL.
    count, wire = _per_worker(job.in_flight, job.readers)
    makers = {addr: _replica(addr, job.connection, job.timeout_s, job.hosts.get(addr), wire)
              for addr in job.replicas}
    workers: dict[str, list] = {}
    run_id = uuid.uuid4().hex  # a worker's first call of this job connects again if its last attempt failed
    alive = list(job.replicas)
    load = {(addr, k): 0 for addr in alive for k in range(count)}
    depth = wire + READ_AHEAD
    queue = deque(_Batch(todo[k:k + job.batch_size]) for k in range(0, len(todo), job.batch_size))
    calls: dict = {}
    problems: list[RecordProblem] = []
    warned: set[tuple[str, str]] = set()  # a chunk read again (bisecting, failover) warns once
    rid_of = dict(zip(indices, record_ids))
    index_of = dict(zip(record_ids, indices))
    rereads: dict[tuple[int, ...], int] = {}
    deferred: list = []  # heap of (due time, tie-break, batch): batches to send again after a node loss
    order = itertools.count()

    def fail(ids: list[str], stage: str, reason: str) -> None:
        problems.extend(RecordProblem(job.dataset_name, rid, stage, reason, job.model) for rid in ids)
        if progress:
            progress(len(ids))

    with pool_or_own(pool) as pool:
        workers.update((addr, pool.workers(key, count, make)) for addr, (key, make) in makers.items())
        while queue or calls or deferred:
            now = time.monotonic()
            while deferred and deferred[0][0] <= now:
                queue.appendleft(heapq.heappop(deferred)[2])
            while queue and alive:
                slot = min(((a, k) for a in alive for k in range(count)), key=load.get)
                if load[slot] >= depth:
                    break
                batch, worker = queue.popleft(), workers[slot[0]][slot[1]]
                calls[worker.embed_records.remote(job.dataset, job.prep, batch.indices, job.model,
                                                  run_id)] = (batch, slot, worker)
                load[slot] += 1
            if queue and not alive:
                # No replica left: records not read yet are still read (by any worker; nothing is sent), so
                # a record that cannot be read is reported as such; the others fail for want of a replica.
                while queue:
                    batch = queue.popleft()
                    if batch.read:
                        fail([rid_of[i] for i in batch.indices], "embed", f"no reachable replica of {job.model}")
                    else:
                        slot = min(load, key=load.get)
                        worker = workers[slot[0]][slot[1]]
                        calls[worker.embed_records.remote(job.dataset, job.prep, batch.indices, job.model, run_id,
                                                          False)] = (batch, slot, worker)
                        load[slot] += 1
            wake = max(0.0, deferred[0][0] - time.monotonic()) if deferred else None
            if not calls:
                time.sleep(wake or 0.0)
                continue
            finished, _ = ray.wait(list(calls), num_returns=1, timeout=wake)
            if not finished:
                continue
            ref = finished[0]
            batch, slot, worker = calls.pop(ref)
            target = slot[0]
            load[slot] -= 1
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:
                # The worker was lost beyond Ray's own retries (a node went away): the replica's worker is
                # dropped; the records are sent again (read again) elsewhere, a bounded number of times, so a
                # run always ends and loses only what truly cannot be done.
                log.warning("embedding call on %s lost (%s); reading its %d record(s) again",
                            target, _first_line(err), len(batch.indices))
                if isinstance(err, ray.exceptions.ActorDiedError) and workers[target][slot[1]] is worker:
                    # Its restarts are used up (or cannot happen): a fresh worker for the same replica. The
                    # replica itself may be fine; only a failing endpoint takes a replica out of `alive`. The
                    # pool holds the fresh one too, so later jobs of the run get it, not the dead one.
                    workers[target][slot[1]] = pool.replace(makers[target][0], slot[1], worker, makers[target][1])
                key = tuple(batch.indices)
                rereads[key] = rereads.get(key, 0) + 1
                if rereads[key] > MAX_REREADS:
                    fail([rid_of[i] for i in batch.indices], "embed",
                         f"lost {MAX_REREADS + 1} times with Ray nodes: {_first_line(err)}")
                else:
                    heapq.heappush(deferred, (time.monotonic() + 2 ** (rereads[key] - 1), next(order), batch))
                continue
            status, value, ids = result["status"], result["value"], result["ids"]
            for key, seconds in result.get("timing", {}).items():
                job.timing[key] = job.timing.get(key, 0.0) + seconds
            if status == "read":
                fail([rid_of[i] for i in batch.indices], "read", value)
                continue
            for rid, stage, reason in result["problems"]:
                if stage != "warning":
                    fail([rid], stage, reason)
                elif (rid, reason) not in warned:
                    warned.add((rid, reason))
                    problems.append(RecordProblem(job.dataset_name, rid, stage, reason, job.model))
            if not ids:
                continue
            batch = _Batch([index_of[rid] for rid in ids], batch.attempts, read=True)
            if status == "unsent":
                fail(ids, "embed", f"no reachable replica of {job.model}")
            elif status == "ok":
                job.cache.write(ids, value)
                if progress:
                    progress(len(ids))
            elif status in RETRYABLE and status != "RESOURCE_EXHAUSTED":
                log.warning("replica %s of %s failed (%s: %s); failing over", target, job.model, status, value)
                if target in alive:
                    alive.remove(target)
                batch.attempts += 1
                queue.appendleft(batch)
            elif status == "RESOURCE_EXHAUSTED" and "larger than max" in str(value) and len(ids) > 1:
                # The endpoint's message-size limit (gRPC's default is 4 MB): send smaller requests.
                queue.extendleft(reversed(_halves(batch)))
            elif status == "RESOURCE_EXHAUSTED" and batch.attempts < MAX_BUSY_RETRIES:
                # The endpoint's queue is full: back off, then try again (bounded, so a run always ends).
                batch.attempts += 1
                queue.append(batch)
                time.sleep(min(0.2 * 2 ** batch.attempts, 5.0))
            elif status == "INVALID_ARGUMENT" and len(ids) > 1:
                # Bisect so the record the server rejects is found and only it is lost.
                queue.extendleft(reversed(_halves(batch)))
            else:
                fail(ids, "embed", f"{status}: {value}")
    return problems
