"""The embedding cache: content-addressed shards written atomically, so runs resume, never duplicate, never go stale.

Layout: <root>/<model_key>/<dataset_key>/shard-<sha>.npz, each holding `ids`, `emb` and `tokens` (each record's
content token, see Dataset.content_token) for one batch, plus manifest.json describing the model and preprocessing.
A shard appears whole or not at all (write to a temp file, fsync, rename), so a crash loses at most the batch in
flight.

Opened for a run (with a manifest and the dataset's current tokens), the cache checks itself first: a manifest
that differs from the run's drops every shard; a row whose stored token differs from its record's current one
(the record's files changed, or an older cache stored none), or whose record is no longer in the dataset, is
removed from its shard. What remains is exactly what the run may reuse; `check` says what was dropped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
# Written into manifest.json; a cache of another format is dropped and embedded again.
CACHE_FORMAT = 2  # 2: shards carry per-record content tokens


class CacheError(RuntimeError):
    """The cache holds conflicting or missing embeddings."""


@dataclass
class CacheCheck:
    """What opening a cache for a run found and dropped (all zero/empty for a clean, current cache)."""

    manifest: str = ""  # why the manifest did not match this run's ("" when it did, or no shard existed)
    dropped: int = 0  # records whose embeddings went with a mismatched manifest
    changed: int = 0  # records whose files changed since they were cached
    untokened: int = 0  # records cached without a content token (a cache from before tokens)
    removed: int = 0  # records cached but no longer in the dataset (or no longer unique in it)

    def notes(self) -> list[str]:
        """One sentence per kind of drop, for results.json `errors` (stage "warning")."""
        out = []
        if self.manifest:
            out.append(f"{self.manifest}: {self.dropped} cached record(s) dropped; re-embedded")
        if self.changed:
            out.append(f"{self.changed} record(s) changed since they were cached; re-embedded")
        if self.untokened:
            out.append(f"{self.untokened} record(s) cached without a content token (an older cache); re-embedded")
        if self.removed:
            out.append(f"{self.removed} cached record(s) no longer in the dataset; dropped from the cache")
        return out


class EmbeddingCache:
    """Embeddings of one model (identity + preprocessing) on one dataset.

    `tokens` (record id -> current content token) makes the cache content-checked: only rows stored with the
    current token count as done, and write() stores each id's token. Without tokens (a read-only view, a
    benchmark) every stored row counts and write() stores empty tokens.
    """

    def __init__(self, root: Path | str, model_key: str, dataset_key: str, manifest: dict | None = None,
                 tokens: dict[str, str] | None = None) -> None:
        self.dir = Path(root) / model_key / dataset_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tokens = tokens
        self.check = CacheCheck()
        self._index: dict[str, Path] | None = None  # record id -> shard; rows stay on disk
        if manifest is not None:
            manifest = {**manifest, "format": CACHE_FORMAT}
            self._verify_manifest(manifest)
            self._write_json(self.dir / "manifest.json", manifest)
        if tokens is not None:
            self._load_index()  # drops stale rows now, so `check` is complete before anything is embedded

    @classmethod
    def open(cls, directory: Path | str) -> "EmbeddingCache":
        """The cache already laid out at `directory` (as `.dir` of one made with a key); reads, checks nothing."""
        directory = Path(directory)
        return cls(directory.parent, "", directory.name)

    @staticmethod
    def _write_json(path: Path, data: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def _verify_manifest(self, manifest: dict) -> None:
        """Drop every shard when the stored manifest is not this run's (another model, preprocessing or format)."""
        shards = self._shards()
        if not shards:
            return
        expected = json.loads(json.dumps(manifest, sort_keys=True))  # tuples -> lists, as stored
        path = self.dir / "manifest.json"
        try:
            found = json.loads(path.read_text())
        except FileNotFoundError:
            found = None
        except (OSError, ValueError):
            found = "unreadable"
        if found == expected:
            return
        if found is None:
            reason = "cache has no manifest.json"
        elif not isinstance(found, dict):
            reason = "cache manifest.json is unreadable"
        elif found.get("format") != CACHE_FORMAT:
            reason = f"cache format {found.get('format', 1)} is not the current {CACHE_FORMAT}"
        else:
            reason = "cache manifest.json differs from this run's in " + ", ".join(
                _difference(key, found.get(key), expected.get(key))
                for key in sorted(set(found) | set(expected)) if found.get(key) != expected.get(key))
        dropped: set[str] = set()
        for shard in shards:
            try:
                with np.load(shard, allow_pickle=False) as data:
                    dropped.update(data["ids"].tolist())
            except (OSError, ValueError, KeyError):
                pass  # a damaged shard goes too; it holds nothing reusable
            shard.unlink()
        log.warning("%s: %s; dropped %d cached record(s)", self.dir, reason, len(dropped))
        self.check.manifest, self.check.dropped = reason, len(dropped)

    def _save(self, target: Path, ids: list[str], emb: np.ndarray, tokens: list[str]) -> None:
        """Write one shard atomically (temp file, fsync, rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, ids=np.array(ids, dtype=str), emb=np.asarray(emb, np.float32),
                     tokens=np.array(tokens, dtype=str))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)

    def _stale(self, rid: str, token: str) -> str:
        """Why a stored row may not be reused ("" when it may): changed, untokened or removed."""
        if self.tokens is None:
            return ""
        current = self.tokens.get(rid)
        if current is None:
            return "removed"
        if token == current:
            return ""
        return "changed" if token else "untokened"

    def _read_shard(self, shard: Path, with_emb: bool) -> tuple[list[str], list[str], np.ndarray | None]:
        """(ids, tokens, embeddings or None) of one shard; npz members load lazily, so ids alone are cheap."""
        with np.load(shard, allow_pickle=False) as data:
            ids = data["ids"].tolist()
            tokens = data["tokens"].tolist() if "tokens" in data.files else [""] * len(ids)
            return ids, tokens, (data["emb"] if with_emb else None)

    def _load_index(self) -> dict[str, Path]:
        """Record id -> the shard holding its reusable row; drops stale rows from their shards the first time.

        Only ids and tokens are read (the driver never holds embeddings: get() reads rows on demand), except
        where a shard must be rewritten or a record sits in two shards and both rows are compared.
        """
        if self._index is None:
            index: dict[str, Path] = {}
            stale: dict[str, set[str]] = {"changed": set(), "untokened": set(), "removed": set()}
            for shard in self._shards():
                ids, tokens, _ = self._read_shard(shard, with_emb=False)
                why = [self._stale(rid, token) for rid, token in zip(ids, tokens)]
                for rid, reason in zip(ids, why):
                    if reason:
                        stale[reason].add(rid)
                keep = [k for k, reason in enumerate(why) if not reason]
                if len(keep) < len(ids):
                    _, _, emb = self._read_shard(shard, with_emb=True)
                    self._prune(shard, [ids[k] for k in keep], emb[keep], [tokens[k] for k in keep])
                for k in keep:
                    if ids[k] in index:
                        self._same_row(ids[k], index[ids[k]], shard)
                    index[ids[k]] = shard
            self._index = index
            # A record stale in one shard and current in another was re-embedded after a crash: not stale.
            self.check.changed = len(stale["changed"] - set(index))
            self.check.untokened = len(stale["untokened"] - set(index) - stale["changed"])
            self.check.removed = len(stale["removed"])
        return self._index

    def _same_row(self, rid: str, first: Path, second: Path) -> None:
        """Raise CacheError when a record's rows in two shards differ (a repeat of one batch is harmless)."""
        rows = []
        for shard in (first, second):
            ids, _, emb = self._read_shard(shard, with_emb=True)
            rows.append(emb[ids.index(rid)])
        if not np.array_equal(*rows):
            raise CacheError(f"{self.dir}: record {rid} has two different embeddings")

    def _prune(self, shard: Path, ids: list[str], emb: np.ndarray, tokens: list[str]) -> None:
        """Rewrite a shard with only the rows that may be reused (delete it when none may)."""
        if ids:
            self._save(shard, ids, emb, tokens)
        else:
            shard.unlink()

    def done_ids(self) -> set[str]:
        """Record ids already embedded (with their current content, when the cache has tokens)."""
        return set(self._load_index())

    def write(self, record_ids: list[str], embeddings: np.ndarray) -> Path:
        """Store one batch atomically; the shard name is a digest of its ids, so a repeat overwrites itself."""
        if len(record_ids) != len(embeddings) or len(set(record_ids)) != len(record_ids):
            raise CacheError(f"batch of {len(record_ids)} ids (unique: {len(set(record_ids))}) "
                             f"for {len(embeddings)} embeddings")
        digest = hashlib.sha256("\n".join(record_ids).encode()).hexdigest()[:20]
        target = self.dir / f"shard-{digest}.npz"
        tokens = [(self.tokens or {}).get(rid, "") for rid in record_ids]
        self._save(target, record_ids, embeddings, tokens)
        index = self._load_index()
        for rid in record_ids:
            index[rid] = target
        return target

    def get(self, record_ids: list[str]) -> np.ndarray:
        """Embeddings in the given order, read from their shards; raise CacheError naming missing ids."""
        index = self._load_index()
        missing = [rid for rid in record_ids if rid not in index]
        if missing:
            raise CacheError(f"{len(missing)} record(s) missing from {self.dir}: {missing[:5]}")
        if not record_ids:
            return np.zeros((0, 0), np.float32)
        wanted: dict[Path, list[tuple[int, str]]] = {}
        for position, rid in enumerate(record_ids):
            wanted.setdefault(index[rid], []).append((position, rid))
        out: np.ndarray | None = None
        for shard, rows in wanted.items():
            ids, _, emb = self._read_shard(shard, with_emb=True)
            where = {rid: k for k, rid in enumerate(ids)}
            if out is None:
                out = np.empty((len(record_ids), emb.shape[1]), np.float32)
            out[[p for p, _ in rows]] = emb[[where[rid] for _, rid in rows]]
        return out


def _difference(key: str, found: object, expected: object) -> str:
    """`key` with both values when they are short (a fingerprint, a version), else the key alone."""
    short = all(isinstance(v, (str, int, float, type(None))) and len(str(v)) <= 24 for v in (found, expected))
    return f"{key} ({found!r} cached, {expected!r} now)" if short else key
