"""Transfer stage: train on one source's training records, test on every source's test records.

Sources are pooled across datasets on the harmonised transfer task (e.g. the coarse label space), so a
model trained on one hospital is scored on every other.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from orchestrator.dispatch import RecordProblem
from orchestrator.experiment import Experiment
from orchestrator.results import TransferGap, TransferResult, json_float
from orchestrator.stages.embedding_refs import concat_rows
from orchestrator.stages.probe import FitKey, FittedProbe, collect, run_cells
from orchestrator.stages.types import DatasetView
from services.probing.grid import GridCell

ALL = "all datasets"


@dataclass
class _Pool:
    """Every dataset's records that carry the transfer task, in one label space, for one model."""

    emb: object  # ObjectRef of the pooled [N, D] matrix
    y: np.ndarray
    train: np.ndarray  # bool mask
    test: np.ndarray
    sources: np.ndarray


def _pool(model: str, task: str, views: list[DatasetView]) -> tuple[list[str], _Pool | None]:
    space = list(views[0].dataset.tasks[task])
    parts, ys, train_mask, test_mask, sources = [], [], [], [], []
    for view in views:
        if not view.has[model].any():
            continue  # this model embedded nothing of the dataset
        classes, y = view.labels[task]
        full = np.zeros((len(view.usable), len(space)), np.float32)
        for k, c in enumerate(classes):
            full[:, space.index(c)] = y[:, k]
        parts.append(view.emb[model])  # refs, joined in a task
        ys.append(full)
        train, test = view.split_for(task, model)
        for mask, rows in ((train_mask, train), (test_mask, test)):
            m = np.zeros(len(view.usable), bool)
            m[rows] = True
            mask.append(m)
        sources += [f"{s}" for s in view.column(lambda m: m.source)]
    if not parts:  # the model embedded nothing of any dataset (its records are listed in errors)
        return space, None
    return space, _Pool(concat_rows.remote(*parts), np.concatenate(ys), np.concatenate(train_mask),
                        np.concatenate(test_mask), np.array(sources))


def transfer_cells(exp: Experiment, views: list[DatasetView]) -> tuple[list[GridCell], list[RecordProblem]]:
    """One single-fit cell per model x (train source, test source) pair, and the pairs left out and why."""
    cfg = exp.transfer
    task = cfg["task"]
    pools = [v for v in views if task in v.labels]
    if not cfg["enabled"] or not pools:
        return [], []
    cells, problems = [], []
    for model in exp.models:
        space, pool = _pool(model.name, task, pools)
        if pool is None:
            continue
        emb_ref = pool.emb
        sources = pool.sources
        small = sorted({s for s in set(sources) if min((pool.train & (sources == s)).sum(),
                                                       (pool.test & (sources == s)).sum()) < cfg["min_records"]})
        if small and model is exp.models[0]:
            problems.append(RecordProblem(ALL, "*", "transfer", f"{task}: sources {', '.join(small)} have fewer "
                                          f"than {cfg['min_records']} train or test records; left out of the "
                                          "transfer matrix"))
        names = sorted(set(sources) - set(small))
        if len(names) < 2:
            continue
        for a in names:
            tr = np.flatnonzero(pool.train & (sources == a))
            for b in names:
                te = np.flatnonzero(pool.test & (sources == b))
                # Only classes learnable from A and scorable on B take part in the pair.
                keep = (pool.y[tr].sum(0) >= 2) & (pool.y[te].sum(0) >= 1) & (pool.y[te].sum(0) < len(te))
                if keep.sum() < 2 or len(te) == 0:
                    problems.append(RecordProblem(ALL, "*", "transfer", f"{task}: {a} -> {b}: fewer than two "
                                                  "classes present in both", model.name))
                    continue
                cells.append(GridCell(key=(model.name, task, (a, b)), x=emb_ref, y=pool.y[:, keep], train=tr,
                                      test=te, class_names=[space[k] for k in np.flatnonzero(keep)], multi_label=True,
                                      settings=[(None, None)], seeds=[exp.seeds[0]], probes=["linear"],
                                      cs=exp.probe["cs"] or None, cv_folds=exp.probe["cv_folds"]))
    return cells, problems


def _rows(fits: dict[FitKey, FittedProbe]) -> list[TransferResult]:
    """results.json `transfer`: one row per (model, task, train source, test source)."""
    entries = []
    by_pair = {}
    for (model, task, (a, b), *_), fit in fits.items():
        by_pair[(model, task, a, b)] = fit
    for (model, task, a, b), fit in sorted(by_pair.items()):
        entries.append(TransferResult(model=model, task=task, train_source=a, test_source=b, n_train=fit.n_train,
                                      n_test=fit.n_test, auroc_macro=json_float(fit.metrics.get("auroc_macro")),
                                      classes=sorted(fit.per_class_auroc)))
    return entries


def transfer_gaps(transfer: list[TransferResult]) -> list[TransferGap]:
    """Per model and task: mean in-domain AUROC (A -> A) minus mean out-of-domain AUROC (A -> B)."""
    out = []
    for model, task in sorted({(t.model, t.task) for t in transfer}):
        rows = [t for t in transfer if (t.model, t.task) == (model, task) and t.auroc_macro is not None]
        inside = [t.auroc_macro for t in rows if t.train_source == t.test_source]
        outside = [t.auroc_macro for t in rows if t.train_source != t.test_source]
        if inside and outside:
            out.append(TransferGap(model=model, task=task, in_domain=float(np.mean(inside)),
                                   out_of_domain=float(np.mean(outside)),
                                   gap=float(np.mean(inside) - np.mean(outside))))
    return out


def transfer(exp: Experiment, views: list[DatasetView],
             show_progress: bool) -> tuple[list[TransferResult], list[RecordProblem]]:
    """The transfer matrix rows and the problems met building it."""
    cells, problems = transfer_cells(exp, views)
    fits, failed = collect(run_cells(cells, "transfer", show_progress), "transfer")
    return _rows(fits), problems + failed
