"""Assemble stage: the per-run tables of results.json (models, datasets, preprocessing, counts, errors)."""
from __future__ import annotations

from typing import Any

from orchestrator.datasets.base import label_matrix
from orchestrator.dispatch import RecordProblem
from orchestrator.experiment import Experiment, ModelEntry
from orchestrator.results import CountRow, DatasetInfo, ErrorEntry, ModelInfo, PreprocessingInfo
from orchestrator.stages.types import DatasetView, Embedded, Launched


def fingerprint_basis(model: ModelEntry, card: Any) -> str:
    """What the model's fingerprint is a digest of, as results.json `models[].fingerprint_basis` states it."""
    if model.connection.get("protocol") == "v2":
        return "metadata"  # v2_client.card_from_v2: ModelMetadata plus the experiment's overrides, no weights
    if card.backend == "python":
        return "card"  # card.fingerprint: the card (and a weights file if it names one), never the entry point's code
    return "weights"  # card.fingerprint: the card plus every byte of the weights file, which onnx/torch cards require


def model_entry(model: ModelEntry, card: Any, endpoints: list[str]) -> ModelInfo:
    """results.json `models[]`: what the card says, and how the model was reached."""
    return ModelInfo(name=model.name, version=card.version, kind=card.kind, objective=card.objective,
                     embedding_dim=int(card.embedding_dim), params=int(card.params), fingerprint=card.fingerprint,
                     fingerprint_basis=fingerprint_basis(model, card), sampling_rate_hz=card.sampling_rate_hz,
                     num_samples=int(card.num_samples), leads=list(card.leads),
                     normalization=card.normalization, backend=card.backend, served_name=card.name,
                     endpoint="remote" if model.remote else "launched", replicas=len(endpoints),
                     description=card.description)


def dataset_entry(exp: Experiment, view: DatasetView) -> DatasetInfo:
    """results.json `datasets[]`: sizes, sources, class counts and the split."""
    dataset, metas = view.dataset, view.metas
    sources: dict[str, int] = {}
    for m in metas:
        sources[m.source] = sources.get(m.source, 0) + 1
    classes = {}
    for task in view.labels:
        counts = label_matrix(dataset, task).sum(axis=0)
        classes[task] = {c: int(n) for c, n in zip(dataset.tasks[task], counts)}
    train = [view.usable[k] for k in view.train]
    test = [view.usable[k] for k in view.test]
    return DatasetInfo(name=dataset.name, kind=dataset.spec.kind, params=dataset.spec.params, n_records=len(metas),
                       n_patients=len({m.patient_id for m in metas}), sources=dict(sorted(sources.items())),
                       classes=classes, dropped_classes={t: c for t, c in view.dropped.items() if c},
                       split={"strategy": exp.split["strategy"], "n_train": len(train), "n_test": len(test),
                              "train_patients": len({metas[i].patient_id for i in train}),
                              "test_patients": len({metas[i].patient_id for i in test})})


def preprocessing_entries(exp: Experiment, embedded: Embedded) -> list[PreprocessingInfo]:
    """results.json `preprocessing[]`: each model's pipeline on each dataset, with its hash."""
    out = []
    for dataset in embedded.datasets:
        for model in exp.models:
            prep = embedded.sets[(model.name, dataset.name)].prep
            out.append(PreprocessingInfo(model=model.name, dataset=dataset.name, hash=prep.hash,
                                         pipeline=prep.describe()))
    return out


def counts(exp: Experiment, views: list[DatasetView], problems: list[RecordProblem]) -> list[CountRow]:
    """results.json `counts[]`: records per dataset; embedded, skipped and lost per model.

    skipped: records with a per-record problem (unreadable, rejected, failed to embed). lost: records
    that could be read for the model but have no embedding, i.e. what an endpoint failure cost it
    (a bad file is the data's problem and costs every model alike, so it is not counted as lost).
    """
    out = []
    for view in views:
        dataset = view.dataset
        for model in exp.models:
            mine = [p for p in problems if p.dataset == dataset.name and p.record != "*" and p.stage != "warning"
                    and p.model in ("", model.name)]
            unreadable = len({p.record for p in mine if p.stage == "read"})
            done = int(view.has[model.name].sum())  # what the views stage read from the cache
            out.append(CountRow(dataset=dataset.name, model=model.name, records=len(dataset), embedded=done,
                                skipped=len(mine), lost=max(0, len(dataset) - unreadable - done)))
    return out


def lost_model_rows(lost: dict[str, str], views: list[DatasetView],
                    problems: list[RecordProblem]) -> tuple[list[CountRow], list[RecordProblem]]:
    """counts[] rows and `errors` entries of models given up because no endpoint replica answered: every
    readable record of every dataset is lost to them."""
    rows, notes = [], []
    for view in views:
        dataset = view.dataset
        unreadable = len({p.record for p in problems if p.dataset == dataset.name and p.stage == "read"
                          and p.record != "*"})
        for model, reason in lost.items():
            rows.append(CountRow(dataset=dataset.name, model=model, records=len(dataset), embedded=0, skipped=0,
                                 lost=len(dataset) - unreadable))
            notes.append(RecordProblem(dataset.name, "*", "embed", f"endpoint unreachable, model left out: {reason}",
                                       model))
    return rows, notes


def errors(problems: list[RecordProblem]) -> list[ErrorEntry]:
    """results.json `errors[]`, in a stable order."""
    ordered = sorted(problems, key=lambda p: (p.dataset, p.record, p.stage, p.model, p.reason))
    return [ErrorEntry(dataset=p.dataset, record=p.record, stage=p.stage, model=p.model, reason=p.reason)
            for p in ordered]


def models(exp: Experiment, launched: Launched) -> list[ModelInfo]:
    """results.json `models[]` in experiment order."""
    return [model_entry(m, launched.cards[m.name], launched.endpoints[m.name]) for m in exp.models]
