"""Run an experiment end to end: launch servers, embed on Ray, probe, analyse, write the report.

Data flows one way: dataset -> preprocess -> embedding servers -> cache -> probing / analysis
-> results.json + report.html. Every process this starts is stopped on exit, Ctrl-C included.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import ray
from tqdm import tqdm

from orchestrator.cache import EmbeddingCache
from orchestrator.datasets.base import Dataset, label_matrix, open_dataset
from orchestrator.dispatch import EmbedJob, RecordProblem, run_embed_job
from orchestrator.experiment import Experiment
from orchestrator.preprocess import spec_from_card
from services.common.process import ServerProcess, start_server
from services.probing.sampling import patient_split
from orchestrator.endpoints import open_client

log = logging.getLogger(__name__)
SCHEMA_VERSION = "1.1"
ECGLENS_VERSION = "0.1.0"


@dataclass
class Hooks:
    """Callbacks for tests and tools, e.g. to kill a replica mid-run."""

    on_embedded: Callable[[str, int], None] | None = None  # (model, records done so far)
    on_launched: Callable[[dict[str, list[ServerProcess]]], None] | None = None  # owner -> its server processes


@dataclass
class _Services:
    """Every server process this run started; stopped together."""

    log_dir: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(self, module: str, args: list[str], name: str) -> ServerProcess:
        handle = start_server(module, args, name=name, log_dir=self.log_dir, timeout_s=300)
        self.started.append(handle)
        return handle

    def stop_all(self) -> None:
        for handle in self.started:
            handle.stop()


def _init_ray(address: str | None, num_cpus: int | None, temp_dir: str | None) -> str | None:
    """Join a cluster or start a local one; returns the private temp dir of a local one we started, else None."""
    if ray.is_initialized():
        return None
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **common)
        return None
    # A private session dir per run, so two runs on one machine never share Ray's files. Short path
    # under /tmp because Ray's Unix sockets have a length limit.
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="ecglens-ray-", dir="/tmp")
    ray.init(num_cpus=num_cpus or os.cpu_count(), _temp_dir=temp_dir, **common)
    return temp_dir


@ray.remote(num_cpus=0.5, max_retries=1)
def _probe_remote(address: str, emb: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                  class_names: list[str], multi_label: bool, seed: int, cs: list[float], cv_folds: int,
                  kind: str = "linear", groups: list[str] | None = None, bootstrap: int = 0,
                  target_type: str = "classification") -> dict:
    """One probe fit on the probing service (a Ray task, so a sweep fans out over service replicas)."""
    from services.probing.client import ProbingClient

    options = {"probe": kind, "target_type": target_type}
    if bootstrap and groups is not None:
        options.update(test_groups=[groups[i] for i in test], bootstrap=bootstrap, bootstrap_seed=seed)
    with ProbingClient(address) as client:
        result = client.evaluate(emb[train], y[train], emb[test], y[test], class_names, multi_label, seed,
                                 cs=cs or None, cv_folds=cv_folds, timeout=900, **options)
    metrics = dict(result.metrics)
    for name, low in result.metrics_ci_low.items():
        metrics[f"{name}_ci"] = [low, result.metrics_ci_high.get(name)]
    return {"metrics": metrics, "per_class_auroc": result.per_class_auroc, "c": float(result.c),
            "warnings": list(result.warnings), "coef": result.coef, "intercept": result.intercept,
            "mean": result.mean, "scale": result.scale, "probe": kind,
            "hyperparameters": dict(result.hyperparameters), "probabilities": result.test_probabilities}


def _model_entry(model, card, endpoints: list[str]) -> dict:
    return {"name": model.name, "version": card.version, "kind": card.kind, "objective": card.objective,
            "embedding_dim": int(card.embedding_dim), "params": int(card.params), "fingerprint": card.fingerprint,
            "sampling_rate_hz": card.sampling_rate_hz, "num_samples": int(card.num_samples),
            "leads": list(card.leads), "normalization": card.normalization, "backend": card.backend,
            "served_name": card.name, "endpoint": "remote" if model.remote else "launched",
            "replicas": len(endpoints), "description": card.description}


def _settings(exp: Experiment) -> list[tuple[float | None, int | None]]:
    sc = exp.scarcity
    return [(f, None) for f in sc["train_fractions"]] + [(None, k) for k in sc["k_shots"]]


def _number(value) -> float:
    """A numeric metadata value, or NaN when missing or not a number."""
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _json_float(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class _Run:
    """State of one run; methods are the pipeline's stages in order."""

    def __init__(self, exp: Experiment, out_dir: Path, hooks: Hooks, show_progress: bool) -> None:
        self.exp, self.out_dir, self.hooks, self.show_progress = exp, out_dir, hooks, show_progress
        self.rt = exp.runtime
        self.cache_root = Path(self.rt["cache_dir"] or out_dir / "cache")
        self.services = _Services(out_dir / "logs")
        self.timings: dict[str, float] = {}
        self.problems: list[RecordProblem] = []
        self.figures: list[dict] = []

    def launch(self) -> None:
        """Start one server per launched model replica, plus the probing and analysis services."""
        started = time.perf_counter()
        plan = []
        for model in self.exp.models:
            if not model.remote:
                from services.embedding.zoo.registry import resolve_package

                package = str(resolve_package(model.package))  # build zoo models once, before replicas start
                plan += [("services.embedding", ["--model", package], f"{model.name}-{r}", model.name)
                         for r in range(model.replicas)]
        plan += [("services.probing", [], f"probing-{r}", "probing") for r in range(self.rt["probing_replicas"])]
        analyses = self.exp.analyses
        if any(analyses[k]["enabled"] for k in ("umap", "shap", "structure", "similarity")):
            plan += [("services.analysis", [], f"analysis-{r}", "analysis")
                     for r in range(self.rt["analysis_replicas"])]
        with ThreadPoolExecutor(max(1, len(plan))) as pool:
            futures = [(owner, pool.submit(self.services.start, module, args, name))
                       for module, args, name, owner in plan]
            handles = []
            for owner, future in futures:
                try:
                    handles.append((owner, future.result()))
                except Exception:
                    for f in futures:
                        if f[1].done() and not f[1].exception():
                            self.services.started.append(f[1].result())
                    raise
        self.services.started = [h for _, h in handles]
        self.endpoints: dict[str, list[str]] = {m.name: list(m.endpoints) for m in self.exp.models}
        self.probing, self.analysis = [], []
        by_owner: dict[str, list[ServerProcess]] = {}
        for owner, handle in handles:
            by_owner.setdefault(owner, []).append(handle)
            {"probing": self.probing, "analysis": self.analysis}.get(owner, self.endpoints.get(owner, [])).append(
                handle.address)
        if self.hooks.on_launched:
            self.hooks.on_launched(by_owner)
        self.cards = {}
        for model in self.exp.models:
            client, self.cards[model.name] = open_client(self.endpoints[model.name][0], model.connection,
                                                         self.rt["timeout_s"])
            client.close()
        self.timings["launch_s"] = time.perf_counter() - started

    def embed(self) -> None:
        """Embed every dataset with every model into the cache."""
        started = time.perf_counter()
        self.datasets: list[Dataset] = [open_dataset(spec) for spec in self.exp.datasets]
        self.caches: dict[tuple[str, str], EmbeddingCache] = {}
        self.prep = {}
        for dataset in self.datasets:
            ids = [dataset.meta(i).record_id for i in range(len(dataset))]
            duplicates = sorted({r for r in ids if ids.count(r) > 1}) if len(set(ids)) != len(ids) else []
            keep = [i for i, r in enumerate(ids) if r not in duplicates]
            for rid in duplicates:
                self.problems.append(RecordProblem(dataset.name, rid, "read", "duplicate record id; all copies skipped"))
            for model in self.exp.models:
                card = self.cards[model.name]
                prep = spec_from_card(card, self.exp.preprocessing)
                self.prep[(model.name, dataset.name)] = prep
                # The experiment's model name is part of the key: two entries that serve the same package (e.g. a
                # launched copy and a remote endpoint) are embedded and cached separately, never conflated.
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name)
                key = f"{safe}-{card.version}-{card.fingerprint[:12]}-{prep.hash[:12]}"
                cache = EmbeddingCache(self.cache_root, key, dataset.spec.key,
                                       {"model": card.name, "version": card.version, "fingerprint": card.fingerprint,
                                        "dataset": dataset.spec.key, "preprocessing": prep.describe()})
                self.caches[(model.name, dataset.name)] = cache
                job = EmbedJob(model.name, self.endpoints[model.name], dataset.spec, dataset.name, prep, cache,
                               batch_size=min(self.rt["batch_size"], int(card.max_batch_size) or 32),
                               in_flight=self.rt["in_flight"], timeout_s=self.rt["timeout_s"],
                               connection=model.connection)
                with tqdm(total=len(keep), desc=f"embed {model.name} on {dataset.name}", unit="ecg",
                          disable=not self.show_progress, leave=True) as bar:
                    done = [0]  # counted here: a disabled tqdm bar does not count

                    def progress(n: int, bar=bar, name=model.name, done=done) -> None:
                        bar.update(n)
                        done[0] += n
                        if self.hooks.on_embedded:
                            self.hooks.on_embedded(name, done[0])
                    self.problems += run_embed_job(job, keep, [ids[i] for i in keep], progress)
        self.timings["embed_s"] = time.perf_counter() - started

    def prepare(self) -> list["_View"]:
        """Per dataset: the records every model embedded, the split, labels per task, embeddings per model."""
        views = []
        for dataset in self.datasets:
            metas = [dataset.meta(i) for i in range(len(dataset))]
            ids = [m.record_id for m in metas]
            done = set.intersection(*(self.caches[(m.name, dataset.name)].done_ids() for m in self.exp.models))
            usable = [i for i, rid in enumerate(ids) if rid in done]
            tasks = [t for t in (self.exp.tasks or list(dataset.tasks)) if t in dataset.tasks]
            train_all, test_all = self._split(dataset, metas, label_matrix(dataset, tasks[0]))
            position = {i: k for k, i in enumerate(usable)}
            view = _View(dataset, metas, usable, tasks,
                         np.array([position[i] for i in train_all if i in position], dtype=int),
                         np.array([position[i] for i in test_all if i in position], dtype=int))
            for task in self._all_tasks(dataset, tasks):
                y = label_matrix(dataset, task, usable)
                keep = y.sum(axis=0) > 0  # classes nobody has (e.g. LBBB in a synthetic set) cannot be probed
                view.labels[task] = ([c for c, k in zip(dataset.tasks[task], keep) if k], y[:, keep])
                # As in the PTB-XL benchmarking protocol, a record without any label of a multi-label task
                # is left out of that task (not counted as negative for every class).
                labelled = y.sum(axis=1) > 0 if dataset.multi_label[task] else np.ones(len(y), bool)
                view.split[task] = (view.train[labelled[view.train]], view.test[labelled[view.test]])
                view.dropped[task] = [c for c, k in zip(dataset.tasks[task], keep) if not k]
            for model in self.exp.models:
                view.emb[model.name] = ray.put(self.caches[(model.name, dataset.name)].get([ids[i] for i in usable]))
            views.append(view)
        return views

    def _all_tasks(self, dataset, tasks: list[str]) -> list[str]:
        transfer = self.exp.transfer["task"]
        return tasks + ([transfer] if transfer in dataset.tasks and transfer not in tasks else [])

    def evaluate(self) -> tuple[list[dict], list[dict], list[dict], list[dict], list[dict]]:
        """Probes for every model x dataset x task x scarcity setting x seed, transfer, then UMAP and SHAP."""
        started = time.perf_counter()
        exp = self.exp
        views = self.prepare()
        dataset_entries, prep_entries, probe_jobs = [], [], []
        address = iter(range(10**9))
        for view in views:
            dataset = view.dataset
            dataset_entries.append(self._dataset_entry(view))
            for model in exp.models:
                prep = self.prep[(model.name, dataset.name)]
                prep_entries.append({"model": model.name, "dataset": dataset.name, "hash": prep.hash,
                                     "pipeline": prep.describe()})
                groups_ref = ray.put([view.metas[i].patient_id for i in view.usable])
                for task in view.tasks:
                    classes, y = view.labels[task]
                    train, test = view.split[task]
                    y_ref = ray.put(y)
                    for fraction, k_shot in _settings(exp):
                        for seed in exp.seeds:
                            subset = self._subset(y[train], fraction, k_shot, seed, classes, dataset, model, task)
                            if subset is None:
                                continue
                            for kind in exp.probe["kinds"]:
                                key = (model.name, dataset.name, task, fraction, k_shot, seed, kind)
                                ref = _probe_remote.remote(self.probing[next(address) % len(self.probing)],
                                                           view.emb[model.name], y_ref, train[subset], test,
                                                           classes, dataset.multi_label[task], seed,
                                                           exp.probe["cs"], exp.probe["cv_folds"], kind, groups_ref,
                                                           exp.probe["bootstrap"])
                                probe_jobs.append((key, len(subset), len(test), ref))
        probe_jobs += self._regression_jobs(views, address)
        transfer_jobs = self._transfer_jobs(views, address)
        probe_results = self._gather("probes", probe_jobs)
        probes = []
        order = {kind: k for k, kind in enumerate(exp.probe["kinds"])}
        for key in sorted(probe_results, key=lambda k: (k[0], k[1], k[2], order[k[6]], k[3] or 0, k[4] or 0, k[5])):
            result, n_train, n_test = probe_results[key]
            model, dname, task, fraction, k_shot, seed, kind = key
            probes.append({"model": model, "dataset": dname, "task": task, "probe": kind,
                           "train_fraction": fraction, "k_shot": k_shot, "seed": seed, "n_train": n_train,
                           "n_test": n_test, "metrics": {k: _json_float(v) for k, v in sorted(result["metrics"].items())},
                           "per_class_auroc": {k: _json_float(v) for k, v in sorted(result["per_class_auroc"].items())},
                           "c": result["c"], "hyperparameters": result["hyperparameters"],
                           "warnings": result["warnings"]})
        self.comparisons = self._comparisons(views, probe_results)
        transfer = self._transfer_entries(self._gather("transfer", transfer_jobs))
        representations, similarity = self._represent(views, probe_results)
        self.timings["evaluate_s"] = time.perf_counter() - started
        return probes, representations, dataset_entries, prep_entries, transfer, similarity

    def _represent(self, views: list["_View"], probe_results: dict) -> tuple[list[dict], list[dict]]:
        """The representation stage (UMAP, structure, SHAP + stability, CKA, lead attribution)."""
        from orchestrator.representation import RepresentationStage

        an = self.exp.analyses
        if not self.analysis or not any(an[k]["enabled"] for k in ("umap", "shap", "structure", "similarity")):
            return [], []

        def linear(model: str, dataset: str, task: str, fraction: float, seed: int) -> dict | None:
            found = probe_results.get((model, dataset, task, fraction, None, seed, "linear"))
            return found[0] if found else None

        def problem(dataset: str, stage: str, reason: str, model: str) -> None:
            self.problems.append(RecordProblem(dataset, "*", stage, reason, model))

        stage = RepresentationStage(self.exp, self.analysis, problem, self._keep_figures)
        stage.run(views, linear, self.endpoints, self.cards, self.prep)
        return stage.representations(), stage.similarity

    def _regression_jobs(self, views: list["_View"], address) -> list:
        """Probes that predict continuous targets (e.g. age) from the embedding, over the same grid."""
        exp, jobs = self.exp, []
        for target in exp.regression["targets"]:
            for view in views:
                values = np.array([_number(view.metas[i].extra.get(target)) for i in view.usable], dtype=float)
                known = ~np.isnan(values)
                if known.sum() < 10:
                    continue
                train, test = view.split[view.tasks[0]]
                train, test = train[known[train]], test[known[test]]
                y_ref = ray.put(np.nan_to_num(values)[:, None].astype(np.float32))
                groups_ref = ray.put([view.metas[i].patient_id for i in view.usable])
                for fraction in exp.scarcity["train_fractions"]:
                    for seed in exp.seeds:
                        # Nested random subsets (no classes to stratify): a seeded order, then a prefix.
                        order = np.random.default_rng([seed, 4241]).permutation(len(train))
                        subset = np.sort(order[:max(5, int(round(fraction * len(train))))])
                        for kind in exp.probe["kinds"]:
                            for model in exp.models:
                                key = (model.name, view.dataset.name, target, fraction, None, seed, kind)
                                ref = _probe_remote.remote(self.probing[next(address) % len(self.probing)],
                                                           view.emb[model.name], y_ref, train[subset], test, [target],
                                                           False, seed, exp.probe["cs"], exp.probe["cv_folds"], kind,
                                                           groups_ref, exp.probe["bootstrap"], "regression")
                                jobs.append((key, len(subset), len(test), ref))
        return jobs

    def _comparisons(self, views: list["_View"], probe_results: dict) -> list[dict]:
        """Paired model comparisons on the same test ECGs (bootstrap over patients, and macro DeLong)."""
        from services.probing.compare import delong_macro, paired_bootstrap

        exp = self.exp
        if len(exp.models) < 2 or not exp.scarcity["train_fractions"]:
            return []
        full, seed = max(exp.scarcity["train_fractions"]), exp.seeds[0]
        out = []
        for view in views:
            for task in view.tasks:
                classes, y = view.labels[task]
                _, test = view.split[task]
                groups = [view.metas[view.usable[i]].patient_id for i in test]
                for kind in exp.probe["kinds"]:
                    got = {m.name: probe_results.get((m.name, view.dataset.name, task, full, None, seed, kind))
                           for m in exp.models}
                    names = [m.name for m in exp.models if got[m.name] and got[m.name][0]["probabilities"] is not None]
                    for a_i, a in enumerate(names):
                        for b in names[a_i + 1:]:
                            pa, pb = got[a][0]["probabilities"], got[b][0]["probabilities"]
                            entry = {"dataset": view.dataset.name, "task": task, "probe": kind, "train_fraction": full,
                                     "seed": seed, "model_a": a, "model_b": b, "metric": "auroc_macro"}
                            try:
                                boot = paired_bootstrap(y[test], pa, pb, groups, n_boot=max(exp.probe["bootstrap"], 200),
                                                        seed=seed, multi_label=view.dataset.multi_label[task])
                                entry.update(diff=boot["diff"], ci_low=boot["ci_low"], ci_high=boot["ci_high"],
                                             p_value=boot["p_value"])
                            except ValueError as err:
                                self.problems.append(RecordProblem(view.dataset.name, "*", "comparison",
                                                                   f"{a} vs {b} ({kind}): {err}", a))
                                continue
                            try:
                                entry["delong_p"] = delong_macro(y[test], pa, pb, classes)["min_p_holm"]
                            except ValueError:
                                entry["delong_p"] = None
                            out.append({k: _json_float(v) for k, v in entry.items()})
        return out

    def _gather(self, label: str, jobs: list) -> dict:
        """Wait for (key, n_train, n_test, ref) jobs with a progress bar; failed fits become errors."""
        results = {}
        with tqdm(total=len(jobs), desc=label, unit="fit", disable=not self.show_progress or not jobs) as bar:
            pending = {ref: (key, n_train, n_test) for key, n_train, n_test, ref in jobs}
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                key, n_train, n_test = pending.pop(finished[0])
                try:
                    results[key] = (ray.get(finished[0]), n_train, n_test)
                except Exception as err:  # one failed fit is reported, the sweep goes on
                    self.problems.append(RecordProblem(str(key[1]), "*", label, f"{key}: {err}", key[0]))
                bar.update(1)
        return results

    def _transfer_jobs(self, views: list["_View"], address) -> list:
        """Train on one source's training records, test on every source's test records (harmonised labels)."""
        cfg, exp = self.exp.transfer, self.exp
        task = cfg["task"]
        pools = [v for v in views if task in v.labels]
        if not cfg["enabled"] or not pools:
            return []
        jobs = []
        for model in exp.models:
            # Pool every dataset's records that carry the transfer task, in one label space.
            space = list(pools[0].dataset.tasks[task])
            parts, ys, train_mask, test_mask, sources = [], [], [], [], []
            for view in pools:
                classes, y = view.labels[task]
                full = np.zeros((len(view.usable), len(space)), np.float32)
                for k, c in enumerate(classes):
                    full[:, space.index(c)] = y[:, k]
                parts.append(ray.get(view.emb[model.name]))
                ys.append(full)
                train, test = view.split[task]
                tm = np.zeros(len(view.usable), bool)
                tm[train] = True
                train_mask.append(tm)
                qm = np.zeros(len(view.usable), bool)
                qm[test] = True
                test_mask.append(qm)
                sources += [f"{view.metas[i].source}" for i in view.usable]
            emb, y = np.concatenate(parts), np.concatenate(ys)
            train_mask, test_mask, sources = np.concatenate(train_mask), np.concatenate(test_mask), np.array(sources)
            emb_ref = ray.put(emb)
            small = sorted({s for s in set(sources) if min((train_mask & (sources == s)).sum(),
                                                           (test_mask & (sources == s)).sum()) < cfg["min_records"]})
            if small and model is exp.models[0]:
                self.problems.append(RecordProblem("all datasets", "*", "transfer", f"{task}: sources {', '.join(small)} "
                                                   f"have fewer than {cfg['min_records']} train or test records; "
                                                   "left out of the transfer matrix"))
            names = sorted(set(sources) - set(small))
            if len(names) < 2:
                continue
            for a in names:
                tr = np.flatnonzero(train_mask & (sources == a))
                for b in names:
                    te = np.flatnonzero(test_mask & (sources == b))
                    # Only classes learnable from A and scorable on B take part in the pair.
                    keep = (y[tr].sum(0) >= 2) & (y[te].sum(0) >= 1) & (y[te].sum(0) < len(te))
                    if keep.sum() < 2 or len(te) == 0:
                        self.problems.append(RecordProblem("all datasets", "*", "transfer",
                                                           f"{task}: {a} -> {b}: fewer than two classes present in "
                                                           "both", model.name))
                        continue
                    y_ref = ray.put(y[:, keep])
                    ref = _probe_remote.remote(self.probing[next(address) % len(self.probing)], emb_ref, y_ref, tr, te,
                                               [space[k] for k in np.flatnonzero(keep)], True, exp.seeds[0],
                                               exp.probe["cs"], exp.probe["cv_folds"])
                    jobs.append(((model.name, task, a, b), len(tr), len(te), ref))
        return jobs

    def _transfer_entries(self, results: dict) -> list[dict]:
        entries = []
        for (model, task, a, b), (result, n_train, n_test) in sorted(results.items()):
            entries.append({"model": model, "task": task, "train_source": a, "test_source": b,
                            "n_train": n_train, "n_test": n_test,
                            "auroc_macro": _json_float(result["metrics"].get("auroc_macro")),
                            "classes": sorted(result["per_class_auroc"])})
        return entries

    def _split(self, dataset, metas, y_all) -> tuple[list[int], list[int]]:
        """The dataset's official split when asked for and defined (validation joins train), else patient-level."""
        if self.exp.split["strategy"] == "official" and hasattr(dataset, "official_split"):
            folds = dataset.official_split()
            return sorted(folds["train"] + folds.get("validation", [])), sorted(folds["test"])
        return patient_split([m.patient_id for m in metas], y_all, self.exp.split["test_fraction"],
                             self.exp.split["seed"])

    def _subset(self, y_train, fraction, k_shot, seed, classes, dataset, model, task):
        from services.probing.sampling import scarcity_subset

        try:
            return scarcity_subset(y_train, fraction, k_shot, seed, class_names=classes)
        except ValueError as err:
            setting = f"fraction {fraction}" if fraction is not None else f"{k_shot}-shot"
            self.problems.append(RecordProblem(dataset.name, "*", "probe", f"{task}, {setting}, seed {seed}: {err}",
                                               model.name))
            return None

    def _keep_figures(self, figures, model: str, kind: str) -> None:
        folder = self.out_dir / "figures"
        folder.mkdir(exist_ok=True)
        for name, png, caption in figures:
            (folder / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name.replace("/", "__")) + ".png")).write_bytes(png)
            self.figures.append({"name": name, "model": model, "kind": kind, "png": png, "caption": caption})

    def _dataset_entry(self, view: "_View") -> dict:
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
        return {"name": dataset.name, "kind": dataset.spec.kind, "params": dataset.spec.params,
                "n_records": len(metas), "n_patients": len({m.patient_id for m in metas}),
                "sources": dict(sorted(sources.items())), "classes": classes,
                "dropped_classes": {t: c for t, c in view.dropped.items() if c},
                "split": {"strategy": self.exp.split["strategy"], "n_train": len(train), "n_test": len(test),
                          "train_patients": len({metas[i].patient_id for i in train}),
                          "test_patients": len({metas[i].patient_id for i in test})}}


@dataclass
class _View:
    """One dataset after embedding: what evaluation stages share."""

    dataset: Dataset
    metas: list
    usable: list[int]  # dataset indices embedded by every model
    tasks: list[str]
    train: np.ndarray  # positions into usable
    test: np.ndarray
    labels: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)  # task -> (classes, Y)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    split: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # task -> labelled (train, test)
    emb: dict[str, object] = field(default_factory=dict)  # model -> ObjectRef of [len(usable), D]


def _summaries(probes: list[dict]) -> list[dict]:
    from services.probing.efficiency import summarise

    groups: dict[tuple, list[dict]] = {}
    for p in probes:
        groups.setdefault((p["model"], p["dataset"], p["task"], p["probe"], p["train_fraction"], p["k_shot"]),
                          []).append(p)
    out = []
    for (model, dname, task, probe, fraction, k_shot), items in groups.items():
        metrics = {}
        for name in sorted({k for p in items for k in p["metrics"] if not k.endswith("_ci")}):
            values = [p["metrics"][name] for p in items if p["metrics"].get(name) is not None]
            if values:
                metrics[name] = {k: _json_float(float(v)) for k, v in summarise(values).items()}
        out.append({"model": model, "dataset": dname, "task": task, "probe": probe, "train_fraction": fraction,
                    "k_shot": k_shot, "n_seeds": len(items), "metrics": metrics})
    return out


def _label_efficiency(summary: list[dict]) -> list[dict]:
    """Area under the scarcity curve and the fraction reaching 95% of the full-data macro AUROC."""
    from services.probing.efficiency import label_efficiency

    curves: dict[tuple, list] = {}
    for row in summary:
        score = row["metrics"].get("auroc_macro", {}).get("mean")
        if row["train_fraction"] is not None and score is not None:
            curves.setdefault((row["model"], row["dataset"], row["task"], row["probe"]), []).append(
                (row["train_fraction"], score))
    out = []
    for (model, dname, task, probe), points in curves.items():
        points.sort()
        eff = label_efficiency([f for f, _ in points], [v for _, v in points])
        out.append({"model": model, "dataset": dname, "task": task, "probe": probe, "aulc": eff["aulc"],
                    "fraction_to_95pct": eff["fraction_to_95pct"]})
    return out


def _transfer_gaps(transfer: list[dict]) -> list[dict]:
    """Per model and task: mean in-domain AUROC (A -> A) minus mean out-of-domain AUROC (A -> B)."""
    out = []
    for model, task in sorted({(t["model"], t["task"]) for t in transfer}):
        rows = [t for t in transfer if (t["model"], t["task"]) == (model, task) and t["auroc_macro"] is not None]
        inside = [t["auroc_macro"] for t in rows if t["train_source"] == t["test_source"]]
        outside = [t["auroc_macro"] for t in rows if t["train_source"] != t["test_source"]]
        if inside and outside:
            out.append({"model": model, "task": task, "in_domain": float(np.mean(inside)),
                        "out_of_domain": float(np.mean(outside)),
                        "gap": float(np.mean(inside) - np.mean(outside))})
    return out


def run_experiment(exp: Experiment, out_dir: Path | str, ray_address: str | None = None,
                   hooks: Hooks | None = None, show_progress: bool = True, ray_temp_dir: str | None = None) -> dict:
    """Run everything and write results.json, report.html, figures/ and run.json into out_dir."""
    from orchestrator.report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(exp, out_dir, hooks or Hooks(), show_progress)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        ray_dir = _init_ray(ray_address or exp.runtime["ray_address"], exp.runtime["ray_num_cpus"], ray_temp_dir)
        if ray_dir:
            if not ray_temp_dir:
                stack.callback(shutil.rmtree, ray_dir, True)
            stack.callback(ray.shutdown)
        stack.callback(run.services.stop_all)
        run.launch()
        run.embed()
        probes, representations, dataset_entries, prep_entries, transfer, similarity = run.evaluate()
    counts = []
    for dataset in run.datasets:
        for model in exp.models:
            skipped = sum(1 for p in run.problems if p.dataset == dataset.name and p.record != "*"
                          and p.stage != "warning" and p.model in ("", model.name))
            counts.append({"dataset": dataset.name, "model": model.name, "records": len(dataset),
                           "embedded": len(run.caches[(model.name, dataset.name)].done_ids()), "skipped": skipped})
    results = {
        "schema_version": SCHEMA_VERSION,
        "ecglens_version": ECGLENS_VERSION,
        "experiment": exp.raw,
        "models": [_model_entry(m, run.cards[m.name], run.endpoints[m.name]) for m in exp.models],
        "datasets": dataset_entries,
        "preprocessing": prep_entries,
        "probes": probes,
        "summary": (summary := _summaries(probes)),
        "label_efficiency": _label_efficiency(summary),
        "comparisons": run.comparisons,
        "representations": representations,
        "transfer": transfer,
        "transfer_gap": _transfer_gaps(transfer),
        "similarity": similarity,
        "errors": sorted((p.to_dict() for p in run.problems),
                         key=lambda e: (e["dataset"], e["record"], e["stage"], e["model"], e["reason"])),
        "counts": counts,
    }
    from orchestrator.findings import findings

    results["findings"] = findings(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    report = write_report(results, run.figures, out_dir)
    run.timings["total_s"] = time.perf_counter() - started
    (out_dir / "run.json").write_text(json.dumps({
        "timings_s": {k: round(v, 3) for k, v in run.timings.items()},
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "endpoints": run.endpoints, "probing": run.probing, "analysis": run.analysis,
        "report": str(report)}, indent=2) + "\n")
    return results
