"""Embeddings by reference: matrices are made, cut and joined in Ray tasks, so the driver only holds ObjectRefs.

The cache (shards on storage every node sees) is the exchange medium: a load task reads the rows a view needs
where Ray places it, and its output lives in that node's object store. A node lost with such an object is
survivable: Ray re-runs the task (lineage reconstruction) from the cache. No stage gathers a matrix in the
driver, so the driver's memory does not grow with the number of records x embedding width.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import ray

from orchestrator.cache import EmbeddingCache

# Cheap I/O tasks; retried when their worker or node dies (they only read the cache).
REF_TASK = {"num_cpus": 1, "max_retries": 3}


@ray.remote(**REF_TASK)
def load_rows(cache_dir: str, ids: list[str], has: np.ndarray) -> np.ndarray:
    """[len(ids), D] float32 from the cache at cache_dir, zero rows where has is False (never used)."""
    cache = EmbeddingCache.open(Path(cache_dir))
    if has.all():
        return cache.get(ids)
    present = cache.get([rid for rid, h in zip(ids, has) if h])
    out = np.zeros((len(ids), present.shape[1] if present.size else 0), np.float32)
    out[has] = present
    return out


@ray.remote(**REF_TASK)
def take_rows(matrix: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The rows of matrix where keep (a bool mask or positions) selects."""
    return np.ascontiguousarray(matrix[keep])


@ray.remote(**REF_TASK)
def concat_rows(*parts: np.ndarray) -> np.ndarray:
    """The parts stacked row-wise."""
    return np.concatenate(parts)
