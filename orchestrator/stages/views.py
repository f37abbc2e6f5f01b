"""Views stage: per dataset, the records every model embedded, the patient-level split and labels per task.

The split is made once per dataset on every record, then restricted to the usable ones, so adding a model
never moves a record between train and test.
"""
from __future__ import annotations

import numpy as np
from orchestrator.datasets.base import Dataset, RecordMeta, label_matrix
from orchestrator.experiment import Experiment
from orchestrator.stages.embedding_refs import load_rows
from orchestrator.stages.types import DatasetView, Embedded
from services.probing.sampling import patient_split


def split_indices(exp: Experiment, dataset: Dataset, metas: list[RecordMeta],
                  y_all: np.ndarray) -> tuple[list[int], list[int]]:
    """The dataset's official split when asked for and defined (validation joins train), else patient-level."""
    if exp.split["strategy"] == "official" and hasattr(dataset, "official_split"):
        folds = dataset.official_split()
        return sorted(folds["train"] + folds.get("validation", [])), sorted(folds["test"])
    return patient_split([m.patient_id for m in metas], y_all, exp.split["test_fraction"], exp.split["seed"])


def all_tasks(exp: Experiment, dataset: Dataset, tasks: list[str]) -> list[str]:
    """The probed tasks plus the transfer task, when the dataset has it."""
    transfer = exp.transfer["task"]
    return tasks + ([transfer] if transfer in dataset.tasks and transfer not in tasks else [])


def _view(exp: Experiment, dataset: Dataset, embedded: Embedded) -> DatasetView:
    metas = [dataset.meta(i) for i in range(len(dataset))]
    ids = [m.record_id for m in metas]
    # Each set's shards are read once, here: done ids and the embeddings both come from that read.
    caches = [embedded.sets[(m.name, dataset.name)].cache() for m in exp.models]
    done = [c.done_ids() for c in caches]
    # Every record some model embedded; each model is then evaluated on its own (view.has).
    usable = [i for i, rid in enumerate(ids) if any(rid in d for d in done)]
    tasks = [t for t in (exp.tasks or list(dataset.tasks)) if t in dataset.tasks]
    train_all, test_all = split_indices(exp, dataset, metas, label_matrix(dataset, tasks[0]))
    position = {i: k for k, i in enumerate(usable)}
    view = DatasetView(dataset, metas, usable, tasks,
                       np.array([position[i] for i in train_all if i in position], dtype=int),
                       np.array([position[i] for i in test_all if i in position], dtype=int))
    for task in all_tasks(exp, dataset, tasks):
        y = label_matrix(dataset, task, usable)
        keep = y.sum(axis=0) > 0  # classes nobody has (e.g. LBBB in a synthetic set) cannot be probed
        view.labels[task] = ([c for c, k in zip(dataset.tasks[task], keep) if k], y[:, keep])
        # As in the PTB-XL benchmarking protocol, a record without any label of a multi-label task
        # is left out of that task (not counted as negative for every class).
        labelled = y.sum(axis=1) > 0 if dataset.multi_label[task] else np.ones(len(y), bool)
        view.split[task] = (view.train[labelled[view.train]], view.test[labelled[view.test]])
        view.dropped[task] = [c for c, k in zip(dataset.tasks[task], keep) if not k]
    usable_ids = [ids[i] for i in usable]
    for model, cache, have in zip(exp.models, caches, done):
        view.has[model.name] = np.array([rid in have for rid in usable_ids], dtype=bool)
        # By reference: a Ray task reads the rows from the cache wherever it runs; the driver holds a ref.
        view.emb[model.name] = load_rows.remote(str(cache.dir), usable_ids, view.has[model.name])
    return view


def make_views(exp: Experiment, embedded: Embedded) -> list[DatasetView]:
    """One DatasetView per dataset; embeddings are ObjectRefs made by load tasks (see embedding_refs)."""
    return [_view(exp, dataset, embedded) for dataset in embedded.datasets]
