"""The experiment and models sections: datasets, split, scarcity settings; what each model is."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.report.blocks import Labelled, Table
from orchestrator.report.format import DASH, fmt_count, fraction_label, or_dash
from orchestrator.report.templating import render
from orchestrator.results import ModelInfo, Results
from orchestrator.results.queries import is_num


@dataclass(frozen=True)
class Experiment:
    """What templates/experiment.html.j2 shows: the split, the scarcity settings and the datasets."""

    description: str | None
    test_share: str | None
    level: Any
    split_seed: Any
    fractions: str | None
    shots: str | None
    n_seeds: int
    seeds: str | None
    datasets: Table | None


def _datasets_table(results: Results) -> Table | None:
    """One row per dataset: size, sources, classes per task and the split; None without datasets."""
    rows = []
    for d in (results.datasets or []):
        sources = ", ".join(f"{s} ({n:,})" for s, n in sorted((d.sources or {}).items()))
        classes = Labelled(tuple((task, ", ".join(f"{c} ({n:,})" for c, n in counts.items()))
                                 for task, counts in (d.classes or {}).items()))
        sp = d.split or {}
        rows.append([d.name, d.kind, fmt_count(d.n_records), fmt_count(d.n_patients), sources or None, classes,
                     f"{fmt_count(sp.get('n_train'))} ECGs / {fmt_count(sp.get('train_patients'))} patients",
                     f"{fmt_count(sp.get('n_test'))} ECGs / {fmt_count(sp.get('test_patients'))} patients"])
    headers = ["dataset", "kind", "ECGs", "patients", "sources (ECGs)", "classes (ECGs)", "train", "test"]
    return Table(headers, rows, numeric=(2, 3)) if rows else None


def experiment_section(results: Results) -> str:
    """Datasets, split, training fractions, k-shots and seeds."""
    exp = (results.experiment or {})
    split = exp.get("split", {})
    scarcity = exp.get("scarcity") or {}  # the experiment file nests these; accept them flat too
    fractions = ", ".join(fraction_label(f, None)
                          for f in exp.get("train_fractions", scarcity.get("train_fractions", [])))
    shots = ", ".join(fraction_label(None, k) for k in exp.get("k_shots", scarcity.get("k_shots", [])))
    seeds = exp.get("seeds", [])
    tf = split.get("test_fraction")
    return render("experiment.html.j2", v=Experiment(
        description=exp.get("description") or None, test_share=fraction_label(tf, None) if tf is not None else None,
        level=split.get("level", "patient"), split_seed=split.get("seed"), fractions=fractions or None,
        shots=shots or None, n_seeds=len(seeds), seeds=", ".join(map(str, seeds)) or None,
        datasets=_datasets_table(results)))


@dataclass(frozen=True)
class ModelName:
    """The first cell of a models row: name, version and description."""

    name: str
    version: Any
    description: str | None


def _input_spec(m: ModelInfo) -> str:
    """'500 Hz × 5,000 samples (10.0 s); 12 leads: I, II, …'."""
    rate, n = m.sampling_rate_hz, m.num_samples
    leads = m.leads or []
    duration = f" ({n / rate:.1f} s)" if is_num(rate) and is_num(n) and rate else ""
    rate_text = f"{rate:g} Hz" if is_num(rate) else DASH
    return f"{rate_text} \u00d7 {fmt_count(n)} samples{duration}; {len(leads)} leads: {', '.join(leads) or DASH}"


def models_section(results: Results) -> str:
    """One row per model: what it is and what input it expects."""
    rows = [[ModelName(m.name, m.version, m.description or None), m.kind, m.objective, fmt_count(m.params),
             fmt_count(m.embedding_dim), _input_spec(m), m.normalization,
             f"{or_dash(m.backend)}, {or_dash(m.endpoint)}, {or_dash(m.replicas)} replica(s)"]
            for m in (results.models or [])]
    headers = ["model", "kind", "objective", "parameters", "embedding dim", "input", "normalisation", "served by"]
    return render("models.html.j2", models=Table(headers, rows, numeric=(3, 4)) if rows else None)
