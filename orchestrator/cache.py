"""The embedding cache: content-addressed shards written atomically, so runs resume and never duplicate.

Layout: <root>/<model_key>/<dataset_key>/shard-<sha>.npz, each holding `ids` and `emb` for one batch,
plus manifest.json describing the model and preprocessing. A shard appears whole or not at all
(write to a temp file, fsync, rename), so a crash loses at most the batch in flight.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """The cache holds conflicting or missing embeddings."""


class EmbeddingCache:
    """Embeddings of one model (identity + preprocessing) on one dataset."""

    def __init__(self, root: Path | str, model_key: str, dataset_key: str, manifest: dict | None = None) -> None:
        self.dir = Path(root) / model_key / dataset_key
        self.dir.mkdir(parents=True, exist_ok=True)
        if manifest is not None:
            self._write_json(self.dir / "manifest.json", manifest)
        self._rows: dict[str, np.ndarray] | None = None

    @classmethod
    def open(cls, directory: Path | str) -> "EmbeddingCache":
        """The cache already laid out at `directory` (as `.dir` of one made with a key)."""
        directory = Path(directory)
        return cls(directory.parent, "", directory.name)

    @staticmethod
    def _write_json(path: Path, data: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def _load_rows(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            rows: dict[str, np.ndarray] = {}
            for shard in sorted(self.dir.glob("shard-*.npz")):
                with np.load(shard, allow_pickle=False) as data:
                    for rid, emb in zip(data["ids"].tolist(), data["emb"]):
                        if rid in rows and not np.array_equal(rows[rid], emb):
                            raise CacheError(f"{self.dir}: record {rid} has two different embeddings")
                        rows[rid] = emb
            self._rows = rows
        return self._rows

    def done_ids(self) -> set[str]:
        """Record ids already embedded."""
        return set(self._load_rows())

    def write(self, record_ids: list[str], embeddings: np.ndarray) -> Path:
        """Store one batch atomically; the shard name is a digest of its ids, so a repeat overwrites itself."""
        if len(record_ids) != len(embeddings) or len(set(record_ids)) != len(record_ids):
            raise CacheError(f"batch of {len(record_ids)} ids (unique: {len(set(record_ids))}) "
                             f"for {len(embeddings)} embeddings")
        digest = hashlib.sha256("\n".join(record_ids).encode()).hexdigest()[:20]
        target = self.dir / f"shard-{digest}.npz"
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, ids=np.array(record_ids, dtype=str), emb=np.asarray(embeddings, np.float32))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        rows = self._load_rows()
        for rid, emb in zip(record_ids, embeddings):
            rows[rid] = np.asarray(emb, np.float32)
        return target

    def get(self, record_ids: list[str]) -> np.ndarray:
        """Embeddings in the given order; raise CacheError naming missing ids."""
        rows = self._load_rows()
        missing = [rid for rid in record_ids if rid not in rows]
        if missing:
            raise CacheError(f"{len(missing)} record(s) missing from {self.dir}: {missing[:5]}")
        return np.stack([rows[rid] for rid in record_ids]) if record_ids else np.zeros((0, 0), np.float32)
