"""Row helpers of the report: probe cells, n_train per cell, orderings of models, datasets and probes."""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from orchestrator.report.format import fmt_count
from orchestrator.results import ProbeResult, Results, SummaryRow
from orchestrator.results.queries import PROBE_ORDER, fkey, is_num, metric_mean, ordered_probes, probe_kind


def metric_stats(row: SummaryRow | ProbeResult, name: str) -> dict:
    """One metric's summary stats of a summary row ({} when the metric was undefined)."""
    value = (row.metrics or {}).get(name)
    return value if isinstance(value, dict) else {}


def mean_of(row: SummaryRow | ProbeResult, name: str = "auroc_macro") -> float | None:
    """The mean of one metric, or None."""
    return metric_mean(row, name)


def cell_key(row: SummaryRow | ProbeResult) -> tuple:
    """The (model, dataset, task, probe, fraction, k_shot) identity of a summary or probe row."""
    return (row.model, row.dataset, row.task, probe_kind(row), fkey(row.train_fraction),
            row.k_shot)


def n_train_by_cell(results: Results) -> dict[tuple, str]:
    """n_train per cell (see cell_key): one value, or 'min–max' over seeds."""
    seen: dict[tuple, list[int]] = defaultdict(list)
    for p in (results.probes or []):
        if is_num(p.n_train):
            seen[cell_key(p)].append(p.n_train)
    return {k: fmt_count(min(v)) if min(v) == max(v) else f"{min(v):,}\u2013{max(v):,}" for k, v in seen.items()}


def ordered_names(names: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Unique names, those in `preferred` first in its order, the rest sorted."""
    names = set(names)
    return [n for n in preferred if n in names] + sorted(names - set(preferred))


def dataset_task_pairs(results: Results) -> list[tuple[str, str]]:
    """(dataset, task) pairs with summary rows, datasets in results['datasets'] order."""
    dataset_order = [d.name for d in (results.datasets or [])]
    pairs = {(r.dataset, r.task) for r in (results.summary or [])}
    datasets = ordered_names({d for d, _ in pairs}, dataset_order)
    return [(d, t) for d in datasets for t in sorted({t for dd, t in pairs if dd == d})]


def scarcity_sort(row: SummaryRow | ProbeResult) -> tuple:
    """Fractions ascending first, then k-shot rows by k."""
    frac, k = row.train_fraction, row.k_shot
    return (0, frac, 0) if frac is not None else (1, 0.0, k if k is not None else -1)


def probe_rank(kind: str) -> tuple[int, str]:
    """Sort key putting the known kinds first, in PROBE_ORDER (linear, kNN, MLP, the seed's families)."""
    return (PROBE_ORDER.index(kind) if kind in PROBE_ORDER else len(PROBE_ORDER), kind)


def all_probes(results: Results) -> list[str]:
    """Probe kinds that appear in summary or probe rows, in canonical order."""
    return ordered_probes(probe_kind(r) for r in (results.summary or []) + (results.probes or []))
