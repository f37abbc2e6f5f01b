"""One typed row per results.json list (docs/results-schema.md); field order is the order the runner writes.

Nested free-form objects (metrics, a dataset's split, a representation's umap/shap/structure blocks, the
experiment) stay plain dicts: they are keyed by metric, class or lead names, so typing them would not help a
reader. Every field has a default so partial and schema-1.0 files load; see Row for how keys round-trip.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.results.row import Row, optional


@dataclass(kw_only=True)
class ModelInfo(Row):
    """models[]: one evaluated model, as described by its card."""

    name: str | None = None
    version: str | None = None
    kind: str | None = None
    objective: str | None = None
    embedding_dim: int | None = None
    params: int | None = None
    fingerprint: str | None = None
    fingerprint_basis: str | None = optional()  # "weights", "card" or "metadata"; absent in older files
    sampling_rate_hz: float | None = None
    num_samples: int | None = None
    leads: list[str] = field(default_factory=list)
    normalization: str | None = None
    backend: str | None = None
    served_name: str | None = optional()
    endpoint: str | None = None
    replicas: int | None = None
    description: str | None = None


@dataclass(kw_only=True)
class DatasetInfo(Row):
    """datasets[]: one dataset with its record, patient, source, class and split counts."""

    name: str | None = None
    kind: str | None = None
    params: dict[str, Any] | None = optional()
    n_records: int | None = None
    n_patients: int | None = None
    sources: dict[str, int] = field(default_factory=dict)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_classes: dict[str, list[str]] | None = optional()
    split: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class PreprocessingInfo(Row):
    """preprocessing[]: the declared pipeline of one (model, dataset) pair and its hash."""

    model: str | None = None
    dataset: str | None = None
    hash: str | None = None
    pipeline: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ProbeResult(Row):
    """probes[]: one probe fit; metrics maps a metric (or `<metric>_ci`) to its value."""

    model: str | None = None
    dataset: str | None = None
    task: str | None = None
    probe: str | None = None
    train_fraction: float | None = None
    k_shot: int | None = None
    seed: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_class_auroc: dict[str, float] = field(default_factory=dict)
    c: float | None = optional()
    hyperparameters: dict[str, Any] | None = optional()
    warnings: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class SummaryRow(Row):
    """summary[]: probes aggregated over seeds; metrics maps a metric to {mean, std, min, max, n}."""

    model: str | None = None
    dataset: str | None = None
    task: str | None = None
    probe: str | None = None
    train_fraction: float | None = None
    k_shot: int | None = None
    n_seeds: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class EfficiencyRow(Row):
    """label_efficiency[]: area under the scarcity curve and the fraction reaching 95% of full data."""

    model: str | None = None
    dataset: str | None = None
    task: str | None = None
    probe: str | None = None
    aulc: float | None = None
    fraction_to_95pct: float | None = None


@dataclass(kw_only=True)
class Comparison(Row):
    """comparisons[]: paired bootstrap (and DeLong) difference model_a - model_b at one probe cell."""

    dataset: str | None = None
    task: str | None = None
    probe: str | None = None
    train_fraction: float | None = None
    seed: int | None = None
    model_a: str | None = None
    model_b: str | None = None
    metric: str | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    delong_p: float | None = None
    n_common: int | None = optional()  # test ECGs both models embedded: the pairs compared (schema 1.2)


@dataclass(kw_only=True)
class Representation(Row):
    """representations[]: UMAP, structure and SHAP/lead-attribution blocks of one (model, dataset)."""

    model: str | None = None
    dataset: str | None = None
    sources: list[str] = field(default_factory=list)
    n_records: int | None = None
    shap: dict[str, Any] | None = optional()
    umap: dict[str, Any] | None = optional()
    structure: dict[str, Any] | None = optional()
    site_separability: float | None = optional()
    effective_rank: float | None = optional()


@dataclass(kw_only=True)
class TransferResult(Row):
    """transfer[]: a probe trained on one acquisition source and scored on another."""

    model: str | None = None
    task: str | None = None
    train_source: str | None = None
    test_source: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    auroc_macro: float | None = None
    classes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class TransferGap(Row):
    """transfer_gap[]: mean in-domain minus mean out-of-domain macro AUROC of one (model, task)."""

    model: str | None = None
    task: str | None = None
    in_domain: float | None = None
    out_of_domain: float | None = None
    gap: float | None = None


@dataclass(kw_only=True)
class SimilarityRow(Row):
    """similarity[]: linear CKA between two models' embeddings of the same ECGs."""

    dataset: str | None = None
    model_a: str | None = None
    model_b: str | None = None
    cka: float | None = None


@dataclass(kw_only=True)
class RobustnessRow(Row):
    """robustness[]: one model's embeddings of perturbed test ECGs against the clean ones (schema 1.3).

    cosine: mean cosine similarity of each ECG's perturbed and clean embedding; auroc_macro: the clean-trained
    linear probe (full training data, mean over seeds) on the perturbed embeddings of the same ECGs;
    auroc_drop = auroc_clean - auroc_macro. severity is the grade (1 mild .. 3 severe, 0 identity)."""

    model: str | None = None
    dataset: str | None = None
    task: str | None = None
    perturbation: str | None = None
    severity: int | None = None
    level: str | None = None  # the grade's parameter in words, e.g. "10 dB SNR", "LA/RA"
    n: int | None = None  # test ECGs perturbed (a subsample, see experiment.robustness.max_ecgs)
    cosine: float | None = None
    auroc_macro: float | None = None
    auroc_clean: float | None = None
    auroc_drop: float | None = None


@dataclass(kw_only=True)
class SubgroupRow(Row):
    """subgroups[]: a probe's seed-mean macro AUROC in one patient subgroup, with CIs and its gap (schema 1.3)."""

    model: str | None = None
    dataset: str | None = None
    task: str | None = None
    probe: str | None = None
    train_fraction: float | None = None
    attribute: str | None = None  # sex, age_band or source
    group: str | None = None
    n: int | None = None
    n_patients: int | None = None
    auroc_macro: float | None = None
    ci: list[float] | None = None
    overall: float | None = None
    gap: float | None = None
    gap_ci: list[float] | None = None


@dataclass(kw_only=True)
class CalibrationRow(Row):
    """calibration[]: a probe's reliability bins, its seeds' test predictions pooled (schema 1.3)."""

    model: str | None = None
    dataset: str | None = None
    task: str | None = None
    probe: str | None = None
    train_fraction: float | None = None
    n: int | None = None  # test predictions pooled over seeds
    ece: float | None = None  # mean over seeds of probes[].metrics.ece
    brier: float | None = None
    bins: list[dict[str, Any]] = field(default_factory=list)  # low, high, confidence, frequency, n


@dataclass(kw_only=True)
class ErrorEntry(Row):
    """errors[]: a record (or, with record "*", a whole step) that could not be used, and why."""

    dataset: str | None = None
    record: str | None = None
    stage: str | None = None
    model: str | None = None
    reason: str | None = None


@dataclass(kw_only=True)
class CountRow(Row):
    """counts[]: records read, embedded and skipped for one (dataset, model)."""

    dataset: str | None = None
    model: str | None = None
    records: int | None = None
    embedded: int | None = None
    skipped: int | None = None
    lost: int | None = optional()  # readable for this model, yet not embedded (endpoint failures; schema 1.2)


@dataclass(kw_only=True)
class Finding(Row):
    """findings[]: one plain-language strength, risk or note about a model."""

    model: str | None = None
    kind: str | None = None
    text: str | None = None
