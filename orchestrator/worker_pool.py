"""Endpoint workers that live for a whole run: each (model, dataset) job reuses them instead of starting its own.

Starting a worker (a Ray worker process, its imports, a gRPC channel) costs ~1 CPU-s and 1.5-2 s of wall time,
a quarter of embedding 1024 records; a run embeds every dataset with every model and then the robustness copies,
so the pool pays that once per replica per run. Workers are keyed by everything fixed at their creation (replica
address, connection settings, host actor, timeout, calls on the wire, read-ahead); what differs per job (the
dataset, the preprocessing) travels with each call. A worker lost beyond Ray's restarts is replaced in the pool,
so the next job gets the replacement, and close() kills every worker the pool holds.
"""
from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Callable, Hashable, Iterator

import ray


def connection_identity(connection: dict) -> str:
    """A stable text for a connection's settings (two equal settings share workers; kept in memory only)."""
    return json.dumps(connection, sort_keys=True, default=str)


def actor_identity(actor: Any) -> str | None:
    """The Ray actor id of a handle (None for none): handles of one actor compare equal by it."""
    if actor is None:
        return None
    actor_id = getattr(actor, "_actor_id", None)
    return actor_id.hex() if actor_id is not None else f"object-{id(actor)}"


class WorkerPool:
    """Endpoint workers by key, made on first use, reused by later jobs, killed on close (a context manager)."""

    def __init__(self) -> None:
        self._workers: dict[Hashable, list[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def workers(self, key: Hashable, count: int, make: Callable[[], Any]) -> list[Any]:
        """The first `count` workers under `key`, making the missing ones with `make()`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            held = self._workers.setdefault(key, [])
            while len(held) < count:
                held.append(make())
            return held[:count]

    def replace(self, key: Hashable, index: int, dead: Any, make: Callable[[], Any]) -> Any:
        """A fresh worker in place of `dead`, the index-th under `key` (lost beyond its restarts); the one there
        already if it is no longer `dead` (replaced before)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            held = self._workers.setdefault(key, [])
            while len(held) <= index:
                held.append(make())
            if held[index] is dead:
                held[index] = make()
            return held[index]

    def actors(self) -> list[Any]:
        """Every worker the pool holds now."""
        with self._lock:
            return [w for held in self._workers.values() for w in held]

    def close(self) -> None:
        """Kill every worker (idempotent); a later workers() call is refused."""
        with self._lock:
            self._closed = True
            held, self._workers = [w for ws in self._workers.values() for w in ws], {}
        for worker in held:
            try:
                ray.kill(worker)
            except Exception:  # already gone with its node, or Ray is shutting down: nothing left to stop
                pass

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def pool_or_own(pool: WorkerPool | None) -> Iterator[WorkerPool]:
    """The caller's pool, left open (it outlives this use), or a pool of our own, closed on leaving."""
    if pool is not None:
        yield pool
        return
    with WorkerPool() as own:
        yield own
