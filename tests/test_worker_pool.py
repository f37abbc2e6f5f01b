"""A run's WorkerPool: later jobs reuse the same endpoint worker actors (start-up paid once), what they embed is
bit for bit what jobs with workers of their own embed, a worker lost for good is replaced in the pool as well,
and closing the pool leaves no worker alive.
"""
from __future__ import annotations

import time

import numpy as np

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import DatasetSpec, open_dataset
from orchestrator.dispatch import EmbedJob, run_embed_job
from orchestrator.preprocess import spec_from_card
from orchestrator.worker_pool import WorkerPool, actor_identity
from services.common.process import start_server
from services.embedding.client import EmbeddingClient

SPECS = [DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": 21, "seed": s}) for s in (4, 5)]


def _job(address: str, spec: DatasetSpec, prep, root) -> tuple[EmbedJob, list[str]]:
    dataset = open_dataset(spec)
    ids = [dataset.meta(i).record_id for i in range(len(dataset))]
    return EmbedJob("m", [address], spec, dataset.name, prep, EmbeddingCache(root, "m", spec.key), batch_size=8,
                    in_flight=2), ids


def _worker_states(ray) -> dict[str, str]:
    """actor id -> state of every EndpointWorker this Ray session made."""
    return {aid: a["State"] for aid, a in _worker_table(ray).items()}


def _worker_table(ray) -> dict[str, dict]:
    """actor id -> Ray's record (State, Pid, NumRestarts, ...) of every EndpointWorker this Ray session made."""
    return {aid: a for aid, a in ray._private.state.actors().items()
            if a.get("ActorClassName", "").endswith("EndpointWorker")}


def _wait_dead(ray, ids: set[str], deadline_s: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + deadline_s
    while True:
        states = {a: s for a, s in _worker_states(ray).items() if a in ids}
        if all(s == "DEAD" for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def test_jobs_on_one_pool_reuse_its_workers_and_embed_bit_for_bit_the_same(ray_session, random_resnet_pkg,
                                                                          tmp_path):
    ray = ray_session
    earlier = set(_worker_states(ray))
    with start_server("services.embedding", ["--model", str(random_resnet_pkg)], name="pool") as server:
        with EmbeddingClient(server.address) as client:
            prep = spec_from_card(client.card(), {"window": "average", "max_windows": 2})
        alone = []
        for spec in SPECS:  # workers of each job's own, killed when it ends
            job, ids = _job(server.address, spec, prep, tmp_path / "alone")
            assert run_embed_job(job, list(range(len(ids))), ids) == []
            alone.append(job.cache.get(ids))
        pooled, seen, pids = [], [], []
        with WorkerPool() as pool:
            for spec in [*SPECS, SPECS[0]]:  # the third job: a dataset a worker opened before, then another
                job, ids = _job(server.address, spec, prep, tmp_path / f"pool-{len(seen)}")
                assert run_embed_job(job, list(range(len(ids))), ids, pool=pool) == []
                pooled.append(job.cache.get(ids))
                seen.append({actor_identity(w) for w in pool.actors()})
                table = _worker_table(ray)
                pids.append({a: (table[a]["State"], table[a]["Pid"], table[a]["NumRestarts"]) for a in seen[-1]})
            held = seen[0]
        # The same two actors, in the same processes, served every job; none was added or restarted.
        assert len(held) == 2 and seen == [held] * 3 and pids == [pids[0]] * 3
        assert {state for state, _, restarts in pids[0].values()} == {"ALIVE"}
        assert all(restarts == 0 for _, _, restarts in pids[0].values())
        for a, b in zip([*alone, alone[0]], pooled):
            assert np.array_equal(a, b)  # bit for bit, not close
        assert set(_wait_dead(ray, held).values()) == {"DEAD"}  # close() left none alive
        made = set(_worker_states(ray)) - earlier
        assert len(made) == 6  # 2 per job without a pool, 2 in the pool
        assert set(_wait_dead(ray, made).values()) == {"DEAD"}  # nor did the jobs without a pool


def test_a_worker_lost_for_good_is_replaced_in_the_pool_too(ray_session, random_resnet_pkg, tmp_path):
    ray = ray_session
    with start_server("services.embedding", ["--model", str(random_resnet_pkg)], name="pool") as server:
        with EmbeddingClient(server.address) as client:
            prep = spec_from_card(client.card())
        with WorkerPool() as pool:
            job, ids = _job(server.address, SPECS[0], prep, tmp_path / "a")
            assert run_embed_job(job, list(range(len(ids))), ids, pool=pool) == []
            before = pool.actors()
            ray.kill(before[0])  # no restart: the next call on it fails with ActorDiedError
            job, ids = _job(server.address, SPECS[1], prep, tmp_path / "b")
            assert run_embed_job(job, list(range(len(ids))), ids, pool=pool) == []
            assert sorted(job.cache.done_ids()) == sorted(ids)
            after = [actor_identity(w) for w in pool.actors()]
            assert after[1] == actor_identity(before[1]) and after[0] != actor_identity(before[0])
            assert _worker_states(ray)[after[0]] == "ALIVE"
            job, ids = _job(server.address, SPECS[0], prep, tmp_path / "c")  # a later job: no dead worker left
            assert run_embed_job(job, list(range(len(ids))), ids, pool=pool) == []
            assert [actor_identity(w) for w in pool.actors()] == after
        assert set(_wait_dead(ray, set(after)).values()) == {"DEAD"}


def test_launch_starts_the_workers_that_embed_then_takes_from_the_pool(ray_session, random_resnet_pkg, tmp_path):
    from orchestrator.experiment import parse_experiment
    from orchestrator.stages.embed import early_workers, embed
    from orchestrator.stages.launch import Services, launch
    from orchestrator.stages.types import Hooks

    exp = parse_experiment({"datasets": ["synthetic:eu@12"], "models": ["random-resnet"]}, "exp.yaml")
    services, at_address = Services(tmp_path / "logs"), []
    with WorkerPool() as pool:
        start = early_workers(exp, pool)

        def on_address(model: str, address: str, connection: dict, host) -> None:
            start(model, address, connection, host)
            at_address.append((model, address, {actor_identity(w) for w in pool.actors()}))

        try:
            launched = launch(exp, services, Hooks(), on_address=on_address)
            embedded = embed(exp, launched, tmp_path / "cache", Hooks(), False, pool)
            after = {actor_identity(w) for w in pool.actors()}
        finally:
            services.stop_all()
    # Started once the server had an address (before it served), under the key embed looks them up by: embed
    # made no second set, and every record was embedded through them.
    [(model, address, started)] = at_address
    assert (model, [address]) == ("random-resnet", launched.endpoints["random-resnet"])
    assert len(started) == 2 and after == started
    assert [p for p in embedded.problems if p.stage != "warning"] == []
    dataset = embedded.datasets[0]
    ids = [dataset.meta(i).record_id for i in range(len(dataset))]
    assert embedded.sets[("random-resnet", dataset.name)].cache().get(ids).shape == (12, 256)
