"""What the pipeline stages hand each other: plain dataclasses, no behaviour beyond small accessors.

Dataclasses rather than pydantic: these cross no trust boundary (the experiment file is validated on the
way in, results.json is written on the way out), so validation here would only cost time and a dependency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import Dataset, RecordMeta
from orchestrator.dispatch import RecordProblem
from orchestrator.preprocess import PreprocessSpec


@dataclass
class Hooks:
    """Callbacks for tests and tools, e.g. to kill a replica mid-run."""

    on_embedded: Callable[[str, int], None] | None = None  # (model, records done so far)
    on_launched: Callable[[dict[str, list[Any]]], None] | None = None  # owner -> its ServerProcess handles


@dataclass
class Figure:
    """One PNG the report shows; `name` is also its file name under figures/."""

    name: str
    model: str
    kind: str
    png: bytes
    caption: str

    def as_dict(self) -> dict[str, Any]:
        """The form the report reads."""
        return {"name": self.name, "model": self.model, "kind": self.kind, "png": self.png, "caption": self.caption}


@dataclass
class Launched:
    """Where every model and service of the run answers, and what each model's card says."""

    endpoints: dict[str, list[str]]  # model name -> replica addresses (launched or remote)
    cards: dict[str, Any]  # model name -> its ModelCard (protobuf)
    analysis: list[str]  # analysis service replicas


@dataclass(frozen=True)
class EmbeddingSet:
    """One model's embeddings of one dataset: a reference to cached shards, not a matrix."""

    model: str
    dataset: str
    cache_dir: Path
    prep: PreprocessSpec

    def cache(self) -> EmbeddingCache:
        """Open the shards (no manifest is rewritten)."""
        return EmbeddingCache.open(self.cache_dir)

    def done_ids(self) -> set[str]:
        """Record ids embedded so far."""
        return self.cache().done_ids()

    def load(self, record_ids: list[str]) -> np.ndarray:
        """[len(record_ids), D] float32, in the given order."""
        return self.cache().get(record_ids)


@dataclass
class Embedded:
    """The embed stage's output: the datasets, an EmbeddingSet per (model, dataset), and lost records."""

    datasets: list[Dataset]
    sets: dict[tuple[str, str], EmbeddingSet]  # (model, dataset) -> set
    problems: list[RecordProblem] = field(default_factory=list)


@dataclass
class DatasetView:
    """One dataset after embedding: the records every model embedded, the split and labels per task."""

    dataset: Dataset
    metas: list[RecordMeta]
    usable: list[int]  # dataset indices embedded by every model
    tasks: list[str]
    train: np.ndarray  # positions into usable
    test: np.ndarray
    labels: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)  # task -> (classes, Y)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # task -> classes nobody has
    split: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # task -> labelled (train, test)
    emb: dict[str, Any] = field(default_factory=dict)  # model -> Ray ObjectRef of [len(usable), D]

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.dataset.name

    def column(self, get: Callable[[RecordMeta], Any]) -> list[Any]:
        """One metadata value per usable record, in position order."""
        return [get(self.metas[i]) for i in self.usable]
