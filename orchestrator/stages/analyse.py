"""Analyse stage: UMAP, structure metrics, SHAP (with stability), CKA, lead attribution.

Runs after the probes: it explains the fitted linear probes and looks at the embeddings themselves.
UMAP, structure, SHAP and CKA run in Ray tasks, placed anywhere in the cluster, that compute with
the AnalysisService's own code (services.analysis.tasks) on the float32 values it would receive, so
no matrix travels over gRPC and the numbers and figures equal the served path's. Lead attribution
goes through each model's own endpoint, so it exercises the served path.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import ray

from orchestrator.attribution.clinical import clinical_notes
from orchestrator.attribution.compute import attribute
from orchestrator.attribution.figure import lead_heatmap
from orchestrator.dispatch import RecordProblem
from orchestrator.endpoints import EndpointError, open_client
from orchestrator.server_host import current_endpoints
from orchestrator.experiment import Experiment
from orchestrator.preprocess import preprocess
from orchestrator.results import Representation, SimilarityRow
from orchestrator.stages.analysis_tasks import (driver_threads, grid_points, shap_remote, similarity_remote,
                                               structure_remote, umap_remote, umap_top_remote)
from orchestrator.stages.probe import Probed
from orchestrator.stages.probe_shap import SVM_NOTE, explained, tree_shap_remote
from orchestrator.stages.types import DatasetView, Embedded, Figure, Launched
from services.analysis import sampling
from services.analysis.figures import umap_grid
from services.analysis.shap_stats import cross_source_shap_agreement, shap_stability

log = logging.getLogger(__name__)
ANALYSES = ("umap", "shap", "structure", "similarity")  # the ones run in Ray tasks (attribution is not)
AGE_BANDS = ((0, 40, "<40"), (40, 60, "40-59"), (60, 75, "60-74"), (75, 200, "75+"))
def age_band(age) -> str:
    """Coarse age band for colouring (unknown when missing)."""
    if age is None:
        return "unknown"
    return next((label for low, high, label in AGE_BANDS if low <= age < high), "unknown")


def _stability(runs: list[np.ndarray], names: list[str], classes: list[str], k: int) -> dict | None:
    if len(runs) < 2:
        return None
    s = shap_stability(runs, k=min(k, runs[0].shape[1]), class_names=classes, run_names=names)
    return {"k": s.k, "mean_jaccard": s.mean_jaccard, "per_class": s.per_class, "chance": s.chance}


@dataclass
class Analysed:
    """The analyse stage's output: results.json `representations` and `similarity`, figures, failures."""

    representations: list[Representation] = field(default_factory=list)
    similarity: list[SimilarityRow] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)


def analyse(exp: Experiment, views: list[DatasetView], probed: Probed, launched: Launched,
            embedded: Embedded) -> Analysed:
    """Every enabled representation analysis; nothing when none is enabled."""
    if not any(exp.analyses[k]["enabled"] for k in ANALYSES):
        return Analysed()

    def linear(model: str, dataset: str, task: str, fraction: float, seed: int) -> dict | None:
        found = probed.linear(model, dataset, task, fraction, seed)
        return found.probe_dict() if found else None

    stage = _RepresentationStage(exp, driver_threads())
    # Analyses compare models with each other (UMAP grids, CKA), so they look at the same ECGs: those
    # every model embedded. Probes, by contrast, use every record of each model.
    common = []
    for view in views:
        keep = view.common()
        if not keep.all():
            stage.problems(view.name, "warning", f"representation analyses use the {int(keep.sum())} of "
                           f"{len(keep)} records every model embedded", "")
        common.append(view.restricted(keep))
    views = common
    preps = {key: embedding_set.prep for key, embedding_set in embedded.sets.items()}
    stage.connections = {m.name: launched.connection(m.name, m.connection) for m in exp.models}
    # Lead attribution calls each model's servers again: after a node loss a launched replica lives elsewhere.
    stage.run(views, linear, current_endpoints(launched.endpoints, launched.hosts), launched.cards, preps)
    return Analysed([Representation.from_dict(entry) for entry in stage.representations()],
                    [SimilarityRow(**row) for row in stage.similarity], stage.figures, stage.found)


@dataclass
class _RepresentationStage:
    """Working state of the stage: entries filled in as analyses return."""

    exp: Experiment
    threads: dict  # the driver's BLAS / OpenMP threads, which every analysis task computes with
    entries: dict = field(default_factory=dict)
    similarity: list[dict] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    found: list[RecordProblem] = field(default_factory=list)
    connections: dict = field(default_factory=dict)  # model -> connection settings (Launched.connection)

    def problems(self, dataset: str, stage: str, reason: str, model: str) -> None:
        """Record one failed analysis; the stage goes on."""
        self.found.append(RecordProblem(dataset, "*", stage, reason, model))

    def keep_figures(self, figures: list, model: str, kind: str) -> None:
        """Keep (name, png, caption) figures for the report."""
        self.figures += [Figure(name, model, kind, png, caption) for name, png, caption in figures]

    def run(self, views: list, linear: Callable, endpoints: dict, cards: dict, preps: dict) -> None:
        """UMAP + structure + SHAP for every (model, dataset); CKA and UMAP grids per dataset; attribution."""
        an = self.exp.analyses
        jobs = []
        for view in views:
            task = view.tasks[0]
            classes, y = view.labels[task]
            primary = [classes[k] for k in y.argmax(axis=1)]
            sources = [view.metas[i].source for i in view.usable]
            groups = [view.metas[i].patient_id for i in view.usable]
            for model in self.exp.models:
                entry = self.entries.setdefault((model.name, view.dataset.name), {
                    "model": model.name, "dataset": view.dataset.name, "sources": sorted(set(sources)),
                    "n_records": len(view.usable)})
                if an["umap"]["enabled"]:
                    jobs.append(("umap", model.name, view, umap_remote.remote(
                        view.emb[model.name], primary, sources, an["umap"], model.name, self.threads)))
                elif an["structure"]["enabled"]:
                    jobs.append(("structure", model.name, view, structure_remote.remote(
                        view.emb[model.name], primary, sources, groups, None, an["structure"],
                        self.exp.split["seed"], self.threads)))
                if an["shap"]["enabled"]:
                    jobs += self._shap_jobs(view, model.name, task, classes, linear, entry)
        projections: dict = {}
        followups, top = [], []
        for kind, model, view, ref in jobs:
            try:
                value = ray.get(ref)
            except Exception as err:  # one failed analysis is reported, the run goes on
                self.problems(view.dataset.name, "analysis", f"{kind} failed: {err}", model)
                continue
            entry = self.entries[(model, view.dataset.name)]
            if kind == "umap":
                scores, figures, projection = value
                # Schema 1.4: which rows each UMAP estimate used (caps and seeded subsamples at large N).
                scores["subsample"] = sampling.umap_rows(len(projection), grid_points(an["umap"]) is not None)
                entry["umap"] = {**scores, **entry.get("umap", {})}
                projections[(model, view.dataset.name)] = projection
                self.keep_figures([f for f in figures if not f[0].startswith("umap-selection/")], model, "umap")
                self.keep_figures([f for f in figures if f[0].startswith("umap-selection/")], model,
                                  "umap_selection")
                if an["structure"]["enabled"]:
                    followups.append(self._structure_job(view, model, projection))
            elif kind == "structure":
                self._set_structure(entry, value, view, projection=False)
            else:
                self._set_shap(entry, kind, value, model)
                if kind == "shap-main" and an["umap"]["enabled"] and an["umap"]["shap_top_k"]:
                    top.append((model, view, self._umap_top_job(view, model, value[2])))
        for model, view, ref in top:  # before structure: it is the shorter wait of the two
            try:
                summary, figures = ray.get(ref)
            except Exception as err:
                self.problems(view.dataset.name, "analysis", f"UMAP on the top SHAP dimensions failed: {err}", model)
                continue
            summary["subsample"] = sampling.selection_rows(len(view.usable))
            self.entries[(model, view.dataset.name)].setdefault("umap", {})["shap_top_k"] = summary
            self.keep_figures(figures, model, "umap_selection")
        for model, view, ref in followups:
            try:
                self._set_structure(self.entries[(model, view.dataset.name)], ray.get(ref), view, projection=True)
            except Exception as err:
                self.problems(view.dataset.name, "analysis", f"structure failed: {err}", model)
        for entry in self.entries.values():
            self._finish_shap(entry)
        self._similarity(views)
        self._umap_grids(views, projections)
        if an["attribution"]["enabled"] and an["shap"]["enabled"]:
            self._attribution(views, linear, endpoints, cards, preps)

    def _umap_top_job(self, view, model: str, mean_abs: np.ndarray):
        """The seed's UMAP on the top-k SHAP dimensions of the main probe, over every analysed record."""
        classes, y = view.labels[view.tasks[0]]
        primary = [classes[k] for k in y.argmax(axis=1)]
        return umap_top_remote.remote(view.emb[model], np.arange(len(primary)), mean_abs, primary,
                                      self.exp.analyses["umap"], model, self.threads)

    # --- structure -------------------------------------------------------------------------------
    def _structure_job(self, view, model: str, projection: np.ndarray):
        task = view.tasks[0]
        classes, y = view.labels[task]
        primary = [classes[k] for k in y.argmax(axis=1)]
        sources = [view.metas[i].source for i in view.usable]
        groups = [view.metas[i].patient_id for i in view.usable]
        params = {**self.exp.analyses["structure"], "projection_metric": self.exp.analyses["umap"]["metric"]}
        return model, view, structure_remote.remote(view.emb[model], primary, sources, groups, projection, params,
                                                    self.exp.split["seed"], self.threads)

    @staticmethod
    def _set_structure(entry: dict, value: dict, view, projection: bool) -> None:
        keys = ("knn_agreement", "knn_chance", "k", "site_separability", "site_per_source", "effective_rank",
                "participation_ratio", "alignment", "uniformity")
        entry["structure"] = {k: value.get(k) for k in keys}
        _, y = view.labels[view.tasks[0]]
        # Schema 1.4: rows / pairs each estimate used (the structure task labels rows by their primary class).
        entry["structure"]["subsample"] = sampling.structure_rows(y.argmax(axis=1), projection)
        entry["site_separability"] = value.get("site_separability")
        entry["effective_rank"] = value.get("effective_rank")
        if value.get("continuity") is not None:
            entry.setdefault("umap", {})["continuity"] = value["continuity"]

    # --- SHAP ------------------------------------------------------------------------------------
    def _shap_jobs(self, view, model: str, task: str, classes: list[str], linear: Callable, entry: dict) -> list:
        exp, an = self.exp, self.exp.analyses["shap"]
        fractions = exp.scarcity["train_fractions"]
        if not fractions:
            return []
        full, seed0 = max(fractions), exp.seeds[0]
        train, test = view.split[task]
        emb = view.emb[model]  # a ref: rows are cut inside each task
        jobs = []
        wanted = [(full, s) for s in exp.seeds] + [(f, seed0) for f in fractions if f != full]
        for fraction, seed in wanted:
            probe = linear(model, view.dataset.name, task, fraction, seed)
            if probe is None:
                continue
            kind = ("shap-main" if (fraction, seed) == (full, seed0) else
                    f"shap-seed:{seed}" if fraction == full else f"shap-fraction:{fraction:g}")
            jobs.append((kind, model, view, shap_remote.remote(probe, emb, train, test, classes,
                                                                an["top_k"], model, self.threads)))
        probe = linear(model, view.dataset.name, task, full, seed0)
        sources = np.array([view.metas[view.usable[i]].source for i in test])
        if probe is not None and len(set(sources)) > 1:
            for source in sorted(set(sources)):
                rows = test[sources == source]
                jobs.append((f"shap-source:{source}", model, view, shap_remote.remote(
                    probe, emb, train, rows, classes, an["top_k"], model, self.threads)))
        entry["shap"] = {"task": task, "train_fraction": full, "seed": seed0, "classes": classes}
        entry["_runs"] = {"seeds": [], "fractions": [], "sources": {}}
        by_probe = explained(exp.probe["kinds"])
        if by_probe:
            entry["shap"]["by_probe"] = {k: {"explainer": None, "note": SVM_NOTE} for k, tree in by_probe.items()
                                         if not tree}
        for kind in (k for k, tree in by_probe.items() if tree):
            jobs.append((f"shap-probe:{kind}", model, view, tree_shap_remote.remote(
                kind, emb, view.labels[task][1], train, test, classes, view.dataset.multi_label[task], seed0,
                exp.probe["cv_folds"], an["top_k"], self.threads)))
        return jobs

    def _set_shap(self, entry: dict, kind: str, value, model: str) -> None:
        if kind.startswith("shap-probe:"):
            entry["shap"]["by_probe"][kind.split(":", 1)[1]] = value
            return
        summary, figures, mean_abs = value
        runs = entry["_runs"]
        if kind == "shap-main":
            entry["shap"].update(summary)
            self.keep_figures(figures, model, "shap")
            runs["main"] = mean_abs
        elif kind.startswith("shap-seed:"):
            runs["seeds"].append((kind.split(":", 1)[1], mean_abs))
        elif kind.startswith("shap-fraction:"):
            runs["fractions"].append((kind.split(":", 1)[1], mean_abs))
        else:
            runs["sources"][kind.split(":", 1)[1]] = mean_abs

    def _finish_shap(self, entry: dict) -> None:
        runs = entry.pop("_runs", None)
        if runs is None or "main" not in runs:
            return
        shap = entry["shap"]
        if "by_probe" in shap:  # in the experiment's kind order, however the tasks finished
            shap["by_probe"] = {k: shap["by_probe"][k] for k in self.exp.probe["kinds"] if k in shap["by_probe"]}
        classes, k = shap.pop("classes"), self.exp.analyses["shap"]["top_k"]
        seed0, full = str(shap["seed"]), f"{shap['train_fraction']:g}"
        seeds = [(seed0, runs["main"])] + sorted(runs["seeds"], key=lambda r: int(r[0]))
        fractions = sorted(runs["fractions"], key=lambda r: float(r[0])) + [(full, runs["main"])]
        shap["stability_seeds"] = _stability([m for _, m in seeds], [n for n, _ in seeds], classes, k)
        shap["stability_fractions"] = _stability([m for _, m in fractions], [n for n, _ in fractions], classes, k)
        agreement = None
        if len(runs["sources"]) > 1:
            s = cross_source_shap_agreement(runs["sources"], k=min(k, runs["main"].shape[1]), class_names=classes)
            agreement = {"k": s.k, "mean_jaccard": s.mean_jaccard, "per_class": s.per_class, "chance": s.chance}
        shap["cross_source_agreement"] = agreement

    # --- similarity and grids --------------------------------------------------------------------
    def _similarity(self, views: list) -> None:
        if not self.exp.analyses["similarity"]["enabled"] or len(self.exp.models) < 2:
            return
        for view in views:
            try:
                cka, figures = ray.get(similarity_remote.remote(
                    [m.name for m in self.exp.models], view.dataset.name, self.threads,
                    *[view.emb[m.name] for m in self.exp.models]))
            except Exception as err:
                self.problems(view.dataset.name, "analysis", f"similarity failed: {err}", "")
                continue
            names = [m.name for m in self.exp.models]
            for a_i, a in enumerate(names):
                for b in names[a_i + 1:]:
                    value = cka.get((a, b))
                    self.similarity.append({"dataset": view.dataset.name, "model_a": a, "model_b": b,
                                            "cka": None if value is None else float(value)})
            self.keep_figures(figures, "", "cka")

    def _umap_grids(self, views: list, projections: dict) -> None:

        for view in views:
            panels = {m.name: projections.get((m.name, view.dataset.name)) for m in self.exp.models}
            if any(p is None for p in panels.values()) or not panels:
                continue
            task = view.tasks[0]
            classes, y = view.labels[task]
            colourings = {
                "class": [classes[k] for k in y.argmax(axis=1)],
                "source": [view.metas[i].source for i in view.usable],
                "sex": [str(view.metas[i].extra.get("sex") or "unknown") for i in view.usable],
                "age band": [age_band(view.metas[i].extra.get("age")) for i in view.usable],
            }
            for colour_by, labels in colourings.items():
                if len(set(labels)) < 2:
                    continue
                png = umap_grid({m: (p, labels) for m, p in panels.items()}, colour_by,
                                title=f"{view.dataset.name}: UMAP by {colour_by}", seed=self.exp.analyses["umap"]["seed"])
                name = f"umap-grid/{view.dataset.name}/{colour_by.replace(' ', '-')}"
                caption = (f"Every model's UMAP on the same {len(labels)} ECGs of {view.dataset.name}, coloured by "
                           f"{colour_by}; parameters and seed as in the representation table.")
                self.keep_figures([(name, png, caption)], "", "umap_grid")

    # --- lead attribution ------------------------------------------------------------------------
    def _attribution(self, views: list, linear: Callable, endpoints: dict, cards: dict, preps: dict) -> None:

        cfg = self.exp.analyses["attribution"]
        for view in views[:1]:  # one dataset is enough to see which leads drive decisions; it is costly
            task = view.tasks[0]
            classes, y = view.labels[task]
            train, test = view.split[task]
            picks = []
            for c in range(len(classes)):  # the first test ECGs of each class, in index order
                picks += [i for i in test if y[i, c] == 1][:cfg["ecgs_per_class"]]
            picks = sorted(set(picks))
            if not picks:
                continue
            for model in self.exp.models:
                entry = self.entries.get((model.name, view.dataset.name))
                probe = linear(model.name, view.dataset.name, task, max(self.exp.scarcity["train_fractions"] or [1]),
                               self.exp.seeds[0])
                if entry is None or probe is None or "shap" not in entry:
                    continue
                if model.connection.get("protocol", "ecglens") != "ecglens":
                    self.problems(view.dataset.name, "analysis", "lead attribution skipped: it needs the ECGLens "
                                  "protocol (V2 endpoints have no model card to mask against)", model.name)
                    continue
                prep = preps[(model.name, view.dataset.name)]
                ecgs = np.stack([preprocess(view.dataset.load(view.usable[i]), prep) for i in picks])
                connection = self.connections.get(model.name, model.connection)
                client = self._live_client(endpoints[model.name], connection)
                if client is None:
                    self.problems(view.dataset.name, "analysis", "lead attribution skipped: no replica answers",
                                  model.name)
                    continue
                try:
                    result = attribute(client, probe, ecgs, classes, list(prep.leads), segments=cfg["segments"],
                                       baseline=cfg["baseline"], nsamples=cfg["nsamples"], seed=cfg["seed"],
                                       use_ray=not (connection.get("tls") or connection.get("auth")))
                except Exception as err:
                    self.problems(view.dataset.name, "analysis", f"lead attribution failed: {err}", model.name)
                    continue
                finally:
                    client.close()
                per_class = result.lead_importance
                overall = {lead: float(np.mean([per_class[c][lead] for c in per_class])) for lead in result.leads}
                total = sum(overall.values()) or 1.0
                entry["shap"].update({
                    "lead_importance": {lead: v / total for lead, v in overall.items()},
                    "lead_importance_per_class": per_class,
                    "segment_importance_per_class": result.segment_importance,
                    "attribution": {**{k: result.explainer.get(k) for k in ("explainer", "background", "baseline",
                                                                           "nsamples", "groups")},
                                    "n_ecgs": len(picks), "n_embeddings": result.n_embeddings},
                    "clinical_notes": clinical_notes(result)})
                name = f"leads/{model.name}"
                caption = (f"{model.name}: which leads drive each class's probe decision (mean |SHAP| of lead x "
                           f"segment masks, {cfg['baseline']} baseline, {len(picks)} test ECGs, each class scaled to "
                           "its maximum).")
                self.keep_figures([(name, lead_heatmap(result), caption)], model.name, "leads")

    def _live_client(self, addresses: list[str], connection: dict):
        """A client of the first replica that answers quickly (a replica may have died during embedding)."""

        for address in addresses:
            try:
                client, _ = open_client(address, connection, timeout_s=10.0)
            except EndpointError:
                continue
            client.timeout_s = self.exp.runtime["timeout_s"]
            return client
        return None

    def representations(self) -> list[dict]:
        """Entries for results.json, in a stable order."""
        return [self.entries[k] for k in sorted(self.entries)]
