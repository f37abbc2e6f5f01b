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
    on_launched: Callable[[dict[str, list[Any]]], None] | None = None  # owner -> ServerProcess/ServerHost


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
    """Where every model of the run answers, and what each model's card says."""

    endpoints: dict[str, list[str]]  # model name -> replica addresses (launched or remote)
    cards: dict[str, Any]  # model name -> its ModelCard (protobuf)
    connections: dict[str, dict] = field(default_factory=dict)  # model -> connection settings to use
    hosts: dict[str, Any] = field(default_factory=dict)  # address -> ServerHost actor (runs on a cluster)

    def connection(self, model: str, default: dict) -> dict:
        """How to connect to the model's replicas (the experiment's settings plus a run token on a cluster)."""
        return self.connections.get(model, default)


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


@dataclass
class Embedded:
    """The embed stage's output: the datasets, an EmbeddingSet per (model, dataset), and lost records."""

    datasets: list[Dataset]
    sets: dict[tuple[str, str], EmbeddingSet]  # (model, dataset) -> set
    problems: list[RecordProblem] = field(default_factory=list)


@dataclass
class DatasetView:
    """One dataset after embedding: the records some model embedded, the split and labels per task.

    Positions index `usable`. Each model is evaluated on the positions it embedded (`has`), so a model
    that lost records costs only itself; analyses that compare models use `restricted(common())`.
    """

    dataset: Dataset
    metas: list[RecordMeta]
    usable: list[int]  # dataset indices embedded by at least one model
    tasks: list[str]
    train: np.ndarray  # positions into usable
    test: np.ndarray
    labels: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)  # task -> (classes, Y)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # task -> classes nobody has
    split: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # task -> labelled (train, test)
    emb: dict[str, Any] = field(default_factory=dict)  # model -> Ray ObjectRef of [len(usable), D] (0 where absent)
    has: dict[str, np.ndarray] = field(default_factory=dict)  # model -> bool [len(usable)]: embedded

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.dataset.name

    def column(self, get: Callable[[RecordMeta], Any]) -> list[Any]:
        """One metadata value per usable record, in position order."""
        return [get(self.metas[i]) for i in self.usable]

    def split_for(self, task: str, model: str) -> tuple[np.ndarray, np.ndarray]:
        """The task's (train, test) positions that `model` embedded."""
        train, test = self.split[task]
        has = self.has[model]
        return train[has[train]], test[has[test]]

    def common(self) -> np.ndarray:
        """bool [len(usable)]: positions every model embedded."""
        return np.logical_and.reduce(list(self.has.values())) if self.has else np.ones(len(self.usable), bool)

    def restricted(self, keep: np.ndarray) -> "DatasetView":
        """The same view on the positions where `keep` holds (self when it holds everywhere)."""
        if keep.all():
            return self
        position = np.cumsum(keep) - 1

        def remap(positions: np.ndarray) -> np.ndarray:
            return position[positions[keep[positions]]]

        view = DatasetView(self.dataset, self.metas, [u for u, k in zip(self.usable, keep) if k], self.tasks,
                           remap(self.train), remap(self.test), dropped=dict(self.dropped))
        view.labels = {task: (classes, y[keep]) for task, (classes, y) in self.labels.items()}
        view.split = {task: (remap(train), remap(test)) for task, (train, test) in self.split.items()}
        view.has = {model: has[keep] for model, has in self.has.items()}
        from orchestrator.stages.embedding_refs import take_rows  # the stage module imports this one

        view.emb = {model: take_rows.remote(ref, keep) for model, ref in self.emb.items()}
        return view
