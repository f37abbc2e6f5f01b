"""Robustness stage: perturbed copies of some test ECGs through every served model, against the clean embeddings.

Per dataset, up to `robustness.max_ecgs` test ECGs (every model embedded them) are drawn with the stage's seed;
their perturbed copies (orchestrator/perturbations.py, at each grade) form a `perturbed` dataset
(orchestrator/datasets/perturbed.py) that goes through the embed stage's own machinery: EndpointWorker actors
read and perturb and preprocess, and call each model's replicas, shards go to a cache of
their own (<cache>/robustness/...), never the main one. Per model, perturbation and grade:
    cosine      = mean_i cos(e_i, e'_i)           (e clean, e' perturbed embedding of ECG i)
    auroc_macro = mean_s AUROC_macro(y, probe_s(e'))  (probe_s: the linear probe of seed s, full training data)
    auroc_drop  = mean_s AUROC_macro(y, probe_s(e)) - auroc_macro   (the same ECGs clean: train clean, test
                                                                     perturbed)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import DatasetSpec, open_dataset, record_ids
from orchestrator.dispatch import EmbedJob, RecordProblem, run_embed_job
from orchestrator.experiment import Experiment
from orchestrator.perturbations import PERTURBATIONS
from orchestrator.results import RobustnessRow, json_float
from orchestrator.stages.embed import cache_key, job_settings
from orchestrator.stages.probe import Probed
from orchestrator.stages.types import DatasetView, Embedded, Launched
from orchestrator.worker_pool import WorkerPool, pool_or_own
from services.probing.logistic import linear_logits, probabilities
from services.probing.subgroups import macro_auroc_weighted


@dataclass
class Robust:
    """The stage's output: results.json `robustness` rows and what could not be done."""

    rows: list[RobustnessRow] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)


def subsample(exp: Experiment, view: DatasetView) -> np.ndarray:
    """Positions (into view.usable) of up to max_ecgs labelled test ECGs of the first task every model has."""
    _, test = view.split[view.tasks[0]]
    test = test[view.common()[test]]
    n = min(exp.robustness["max_ecgs"], len(test))
    rng = np.random.default_rng([exp.robustness["seed"], 4099])
    return np.sort(rng.choice(test, size=n, replace=False)) if n else test[:0]


def copies(exp: Experiment) -> list[tuple[str, int]]:
    """(perturbation, grade) of every perturbed copy, in the experiment's order."""
    return [(name, grade) for name in exp.robustness["perturbations"]
            for grade in PERTURBATIONS[name].grades(exp.robustness["grades"])]


def perturbed_spec(exp: Experiment, view: DatasetView, positions: np.ndarray) -> DatasetSpec:
    """The `perturbed` dataset of a view's subsample."""
    base = view.dataset.spec
    return DatasetSpec("perturbed", {"base": {"kind": base.kind, "params": base.params},
                                     "indices": [int(view.usable[p]) for p in positions],
                                     "perturbations": [list(c) for c in copies(exp)],
                                     "seed": exp.robustness["seed"]})


def cosines(clean: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """cos(e_i, e'_i) per row; NaN where either vector is zero."""
    num = np.einsum("ij,ij->i", clean, perturbed)
    den = np.linalg.norm(clean, axis=1) * np.linalg.norm(perturbed, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def probe_auroc(probes: list[dict], emb: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    """Mean over the linear probes (one per seed) of their macro AUROC on these embeddings (NaN when undefined)."""
    values = []
    for p in probes:
        probs = probabilities(linear_logits(emb, p["coef"], p["intercept"], p["mean"], p["scale"]), multi_label)
        values.append(macro_auroc_weighted(y, probs, np.ones((1, len(y))))[0])
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def score(clean: np.ndarray, perturbed: np.ndarray, probes: list[dict], y: np.ndarray,
          multi_label: bool) -> dict[str, float | None]:
    """cosine, auroc_macro, auroc_clean, auroc_drop of one perturbed copy of the subsample."""
    cos = cosines(np.asarray(clean, np.float64), np.asarray(perturbed, np.float64))
    out = {"cosine": float(np.nanmean(cos)) if np.isfinite(cos).any() else None,
           "auroc_macro": None, "auroc_clean": None, "auroc_drop": None}
    if probes:
        before, after = probe_auroc(probes, clean, y, multi_label), probe_auroc(probes, perturbed, y, multi_label)
        out.update(auroc_macro=after, auroc_clean=before, auroc_drop=before - after)
    return {k: json_float(v) for k, v in out.items()}


def _embed(exp: Experiment, launched: Launched, model, spec: DatasetSpec, prep, root: Path,
           show_progress: bool, pool: WorkerPool) -> tuple[EmbeddingCache, list[str], list[RecordProblem]]:
    """Embed every perturbed copy with one model, through its replicas, into the robustness cache."""
    dataset = open_dataset(spec)
    card = launched.cards[model.name]
    ids = record_ids(dataset)
    tokens = {rid: dataset.content_token(i) for i, rid in enumerate(ids)}
    cache = EmbeddingCache(root, cache_key(model.name, card, prep.hash), spec.key,
                           {"model": card.name, "version": card.version, "fingerprint": card.fingerprint,
                            "dataset": spec.key, "preprocessing_hash": prep.hash}, tokens=tokens)
    job = EmbedJob(model.name, launched.endpoints[model.name], spec, dataset.name, prep, cache,
                   batch_size=min(exp.runtime["batch_size"], int(card.max_batch_size) or 32),
                   **job_settings(exp, launched, model))
    with tqdm(total=len(ids), desc=f"robustness {model.name}", unit="ecg", disable=not show_progress) as bar:
        lost = [p for p in run_embed_job(job, list(range(len(ids))), ids, bar.update, pool) if p.stage != "warning"]
    # One entry per model and dataset, not one per perturbed copy: the clean records' own errors say the rest.
    problems = [RecordProblem(dataset.name, "*", "robustness", f"{len(lost)} of {len(ids)} perturbed copies not "
                              f"embedded (first: {lost[0].record}: {lost[0].reason}); scored on the rest",
                              model.name)] if lost else []
    return cache, ids, problems


def robustness(exp: Experiment, views: list[DatasetView], probed: Probed, launched: Launched, embedded: Embedded,
               cache_root: Path, show_progress: bool, pool: WorkerPool | None = None) -> Robust:
    """results.json `robustness`: every model x dataset x task x perturbation x grade on the subsample.

    Embedding jobs take their workers from `pool` (the run's: the embed stage's workers, already started) or
    from one of the stage's own.
    """
    if not exp.robustness["enabled"] or not exp.robustness["perturbations"]:
        return Robust()
    with pool_or_own(pool) as pool:
        return _robustness(exp, views, probed, launched, embedded, cache_root, show_progress, pool)


def _robustness(exp: Experiment, views: list[DatasetView], probed: Probed, launched: Launched, embedded: Embedded,
                cache_root: Path, show_progress: bool, pool: WorkerPool) -> Robust:
    """robustness() with a pool."""
    out = Robust()
    full = max(exp.scarcity["train_fractions"], default=None)
    for view in views:
        positions = subsample(exp, view)
        if len(positions) < 2:
            out.problems.append(RecordProblem(view.name, "*", "robustness", "fewer than 2 test ECGs every model "
                                              "embedded: robustness skipped", ""))
            continue
        spec = perturbed_spec(exp, view, positions)
        base_ids = [view.metas[view.usable[p]].record_id for p in positions]
        for model in exp.models:
            prep = embedded.sets[(model.name, view.name)].prep
            cache, ids, problems = _embed(exp, launched, model, spec, prep, cache_root / "robustness",
                                          show_progress, pool)
            out.problems += problems
            clean = embedded.sets[(model.name, view.name)].cache().get(base_ids)
            done = cache.done_ids()
            out.rows += _model_rows(exp, view, model.name, positions, clean, cache, ids, done, probed, full)
    return out


def _model_rows(exp: Experiment, view: DatasetView, model: str, positions: np.ndarray, clean: np.ndarray,
                cache: EmbeddingCache, ids: list[str], done: set[str], probed: Probed,
                full: float | None) -> list[RobustnessRow]:
    """One row per task x perturbed copy of one model (copies with a lost record are scored on the rest)."""
    rows = []
    for task in view.tasks:
        y_all = view.labels[task][1]
        labelled = np.isin(positions, view.split[task][1])
        probes = [f.probe_dict() for f in (probed.linear(model, view.name, task, full, s) for s in exp.seeds)
                  if f is not None and f.linear is not None] if full is not None else []
        every = copies(exp)
        for k, (name, grade) in enumerate(every):
            block = ids[k::len(every)]  # the perturbed dataset is record-major
            have = np.array([rid in done for rid in block]) & labelled
            if not have.any():
                continue
            perturbed = cache.get([rid for rid, h in zip(block, have) if h])
            values = score(clean[have], perturbed, probes, y_all[positions[have]], view.dataset.multi_label[task])
            rows.append(RobustnessRow(model=model, dataset=view.name, task=task, perturbation=name, severity=grade,
                                      level=PERTURBATIONS[name].label(grade), n=int(have.sum()), **values))
    return rows
