"""The dataset interface every adapter implements, and the registry behind `--dataset KIND:PATH`."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np


class RecordError(ValueError):
    """A record that cannot be used; becomes a per-record entry in results.json, never a crash."""


@dataclass(frozen=True)
class Record:
    """One ECG as stored: [leads, samples] in `units`, at its own rate and lead order."""

    record_id: str
    signal: np.ndarray
    sampling_rate_hz: float
    leads: tuple[str, ...]
    units: str = "mV"


@dataclass(frozen=True)
class RecordMeta:
    """What is known of a record without reading its samples."""

    record_id: str
    patient_id: str
    source: str
    labels: dict[str, tuple[str, ...]]  # task -> class names of this record
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A picklable description from which any process (a Ray worker) can reopen the dataset."""

    kind: str
    params: dict[str, Any]

    @property
    def key(self) -> str:
        """Stable short hash of the spec, used in cache paths."""
        blob = json.dumps({"kind": self.kind, "params": self.params}, sort_keys=True)
        return f"{self.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


class Dataset(Protocol):
    """Index-addressable and lazy: meta(i) is cheap, load(i) reads samples.

    content_token(i) is cheap too (stat() only) and changes whenever what load(i) returns may: the embedding
    cache stores it beside each embedding and embeds the record again when it differs.
    """

    spec: DatasetSpec
    name: str
    tasks: dict[str, tuple[str, ...]]  # task -> class names
    multi_label: dict[str, bool]

    def __len__(self) -> int: ...

    def meta(self, i: int) -> RecordMeta: ...

    def load(self, i: int) -> Record: ...

    def content_token(self, i: int) -> str: ...


def file_token(version: str, paths: Iterable[Path | str], *extra: str) -> str:
    """A record's content token: the adapter's version and the name, size and mtime (ns) of each of its files.

    stat() only, so a run checks a large dataset in seconds; a file rewritten with the same size within the
    file system's mtime resolution, or replaced by a same-sized copy that keeps the old mtime, goes unnoticed.
    """
    parts = [version, *extra]
    for path in paths:
        try:
            st = os.stat(path)
            parts.append(f"{path}\t{st.st_size}\t{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{path}\tabsent")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def record_ids(dataset: Dataset) -> list[str]:
    """Every record id in index order: the adapter's own record_ids() when it has one (no metadata is built)."""
    # The embed stage needs only ids; building (and caching) every record's metadata for them would cost
    # the driver ~1 kB per record before a single ECG is read (bench/data_scaling.py).
    own = getattr(dataset, "record_ids", None)
    return list(own()) if callable(own) else [dataset.meta(i).record_id for i in range(len(dataset))]


def label_matrix(dataset: Dataset, task: str, indices: list[int] | None = None) -> np.ndarray:
    """[n, C] float32 0/1 targets of `task` in the task's class order."""
    classes = dataset.tasks[task]
    column = {c: k for k, c in enumerate(classes)}
    indices = list(range(len(dataset))) if indices is None else indices
    y = np.zeros((len(indices), len(classes)), np.float32)
    for row, i in enumerate(indices):
        for label in dataset.meta(i).labels.get(task, ()):
            if label in column:
                y[row, column[label]] = 1.0
    return y


# kind -> "module:Class"; each adapter takes a DatasetSpec. Path-based kinds get params {"path": ...}.
ADAPTERS = {
    "synthetic": "orchestrator.datasets.synthetic_adapter:SyntheticAdapter",
    "ptbxl": "orchestrator.datasets.ptbxl:PtbxlDataset",
    "challenge": "orchestrator.datasets.challenge:ChallengeDataset",
    "code15": "orchestrator.datasets.code15:Code15Dataset",
    "wfdb": "orchestrator.datasets.wfdb_folder:WfdbFolderDataset",
    "mimic-iv-ecg": "orchestrator.datasets.mimic_iv_ecg:MimicIvEcgDataset",
    "mimic": "orchestrator.datasets.mimic_iv_ecg:MimicIvEcgDataset",  # short alias; the adapter's spec says mimic-iv-ecg
    # Perturbed copies of another dataset's records (the robustness stage's; params, not a path).
    "perturbed": "orchestrator.datasets.perturbed:PerturbedDataset",
}

# The coarse rhythm/conduction/morphology label space every adapter maps onto (task "coarse"), so a
# probe trained on one dataset can be tested on another. CODE-15%'s six labels all have a place here.
COARSE_CLASSES: tuple[str, ...] = ("NSR", "AF", "SB", "STach", "1dAVb", "RBBB", "LBBB", "STE")


def open_dataset(spec: DatasetSpec) -> Dataset:
    """Instantiate the adapter a spec names."""
    import importlib

    if spec.kind not in ADAPTERS:
        raise ValueError(f"unknown dataset kind {spec.kind!r}; known: {', '.join(sorted(ADAPTERS))}")
    module, _, cls = ADAPTERS[spec.kind].partition(":")
    try:
        adapter = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise ValueError(f"dataset kind {spec.kind!r} is not available: {err}") from None
    return adapter(spec)


def parse_dataset_arg(text: str) -> DatasetSpec:
    """`KIND:PATH` from the command line; for synthetic, PATH is `SITES[@N]`, e.g. synthetic:eu,sa@120."""
    kind, _, rest = text.partition(":")
    if kind == "synthetic":
        sites, _, count = rest.partition("@")
        params: dict[str, Any] = {"sites": [s for s in sites.split(",") if s] or ["eu", "sa"]}
        if count:
            params["records_per_site"] = int(count)
        return DatasetSpec("synthetic", params)
    if kind in ADAPTERS:
        if not rest:
            raise ValueError(f"--dataset {text!r}: give the folder, e.g. {kind}:/data/{kind}")
        return DatasetSpec(kind, {"path": rest})
    raise ValueError(f"--dataset {text!r}: unknown kind {kind!r}; known: {', '.join(sorted(ADAPTERS))} "
                     f"(e.g. synthetic:eu,sa@120 or ptbxl:/data/ptb-xl)")
