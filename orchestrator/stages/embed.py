"""Embed stage: every dataset through every model into the content-addressed cache (Ray does the fan-out).

Each record's content token (Dataset.content_token) goes to the cache with its id, so a record whose files changed
under the same dataset path is embedded again; each (dataset, model) whose cache dropped anything gets one
"warning" entry in results.json `errors` saying how many records and why.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import Dataset, open_dataset, record_ids
from orchestrator.dispatch import EmbedJob, RecordProblem, run_embed_job, start_workers
from orchestrator.experiment import Experiment
from orchestrator.preprocess import spec_from_card
from orchestrator.stages.launch import OnAddress
from orchestrator.stages.types import Embedded, EmbeddingSet, Hooks, Launched
from orchestrator.worker_pool import WorkerPool, pool_or_own


def _unique_indices(dataset: Dataset, problems: list[RecordProblem]) -> tuple[list[int], list[str]]:
    """Indices whose record id is unique; every copy of a duplicated id is skipped and reported."""
    ids = record_ids(dataset)
    duplicates = sorted(r for r, n in Counter(ids).items() if n > 1)  # Counter: linear at 100k records
    for rid in duplicates:
        problems.append(RecordProblem(dataset.name, rid, "read", "duplicate record id; all copies skipped"))
    skip = set(duplicates)
    keep = [i for i, r in enumerate(ids) if r not in skip]
    return keep, [ids[i] for i in keep]


def metadata_problems(dataset: Dataset) -> list[RecordProblem]:
    """The adapter's bad metadata rows (labels CSV, database table) as `errors` warnings: a row loses no record
    of the dataset, so it is a note, not a skipped record."""
    rows = getattr(dataset, "metadata_problems", lambda: [])()
    return [RecordProblem(dataset.name, where, "warning", problem) for where, problem in rows]


def cache_key(model_name: str, card, prep_hash: str) -> str:
    """The model half of a cache path: experiment name, card version and fingerprint, preprocessing hash."""
    # The experiment's model name is part of the key: two entries that serve the same package (e.g. a
    # launched copy and a remote endpoint) are embedded and cached separately, never conflated.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model_name)
    return f"{safe}-{card.version}-{card.fingerprint[:12]}-{prep_hash[:12]}"


def _worker_settings(exp: Experiment, connection: dict, hosts: dict) -> dict:
    """The settings endpoint workers are made from (and pooled by), for start_workers and EmbedJob alike."""
    return {"in_flight": exp.runtime["in_flight"], "timeout_s": exp.runtime["timeout_s"], "connection": connection,
            "hosts": hosts}


def job_settings(exp: Experiment, launched: Launched, model) -> dict:
    """An EmbedJob's settings for one model that are the same for every dataset (its workers are made from them)."""
    return _worker_settings(exp, launched.connection(model.name, model.connection),
                            {a: h for a, h in launched.hosts.items() if a in launched.endpoints[model.name]})


def early_workers(exp: Experiment, pool: WorkerPool) -> OnAddress:
    """A launch callback that starts a replica's endpoint workers in `pool` as soon as it has an address, so their
    start-up (a process and its imports each, ~1.5 s) overlaps the server's model loading instead of delaying the
    first embed job; embed() then finds them in the pool under the same key (the same _worker_settings)."""
    def start(model: str, address: str, connection: dict, host: Any) -> None:
        start_workers(pool, [address], **_worker_settings(exp, connection, {} if host is None else {address: host}))
    return start


def embed(exp: Experiment, launched: Launched, cache_root: Path, hooks: Hooks, show_progress: bool,
          pool: WorkerPool | None = None) -> Embedded:
    """Embed every dataset with every model; records already in the cache are not sent again.

    Jobs take their endpoint workers from `pool` (the run's, which outlives the stage) or from one of the
    stage's own, closed when it returns.
    """
    with pool_or_own(pool) as pool:
        # Every model's workers start now, before the first dataset is scanned and its caches checked, so their
        # start-up (a process and its imports each) overlaps that work instead of following it.
        for model in exp.models:
            start_workers(pool, launched.endpoints[model.name], **job_settings(exp, launched, model))
        return _embed_all(exp, launched, cache_root, hooks, show_progress, pool)


def _embed_all(exp: Experiment, launched: Launched, cache_root: Path, hooks: Hooks, show_progress: bool,
               pool: WorkerPool) -> Embedded:
    """embed() with a pool."""
    datasets = [open_dataset(spec) for spec in exp.datasets]
    out = Embedded(datasets, {})
    for dataset in datasets:
        keep, ids = _unique_indices(dataset, out.problems)
        out.problems += metadata_problems(dataset)
        # Read once per dataset (stat() per record file), shared by every model's cache.
        tokens = {rid: dataset.content_token(i) for i, rid in zip(keep, ids)}
        for model in exp.models:
            card = launched.cards[model.name]
            prep = spec_from_card(card, exp.preprocessing)
            cache = EmbeddingCache(cache_root, cache_key(model.name, card, prep.hash), dataset.spec.key,
                                   {"model": card.name, "version": card.version, "fingerprint": card.fingerprint,
                                    "dataset": dataset.spec.key, "preprocessing": prep.describe(),
                                    "preprocessing_hash": prep.hash},
                                   tokens=tokens)
            out.problems += [RecordProblem(dataset.name, "*", "warning", note, model.name)
                             for note in cache.check.notes()]
            out.sets[(model.name, dataset.name)] = EmbeddingSet(model.name, dataset.name, cache.dir, prep)
            job = EmbedJob(model.name, launched.endpoints[model.name], dataset.spec, dataset.name, prep, cache,
                           batch_size=min(exp.runtime["batch_size"], int(card.max_batch_size) or 32),
                           **job_settings(exp, launched, model))
            with tqdm(total=len(keep), desc=f"embed {model.name} on {dataset.name}", unit="ecg",
                      disable=not show_progress, leave=True) as bar:
                done = [0]  # counted here: a disabled tqdm bar does not count

                def progress(n: int, bar=bar, name=model.name, done=done) -> None:
                    bar.update(n)
                    done[0] += n
                    if hooks.on_embedded:
                        hooks.on_embedded(name, done[0])
                out.problems += run_embed_job(job, keep, ids, progress, pool)
    return out
