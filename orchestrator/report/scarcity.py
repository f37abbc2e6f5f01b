"""The data-scarcity section: scarcity curves, label efficiency and per-model tables of every metric."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from orchestrator.findings import EFFICIENT_FRACTION, HUNGRY_FRACTION
from orchestrator.report.blocks import InlineFigure, Table, Tag, inline_figure
from orchestrator.report.cells import cell_key, metric_stats, n_train_by_cell, probe_rank, scarcity_sort
from orchestrator.report.figures import scarcity_figure
from orchestrator.report.format import (DASH, METRICS, METRIC_LABELS, REGRESSION_METRICS, fmt, fmt_ci, fmt_pm,
                                        fraction_label)
from orchestrator.report.templating import render
from orchestrator.results import Results
from orchestrator.results.queries import is_num, metric_ci, model_order, primary_metric, probe_kind, probe_label


@dataclass(frozen=True)
class Scarcity:
    """What templates/scarcity.html.j2 shows: the curve, label efficiency, one table per model."""

    figure: InlineFigure
    efficiency: Table | None
    models: list[tuple[str, Table]]


def efficiency_table(results: Results) -> Table | None:
    """AULC and labels needed for 95% of the full-data score; None without label_efficiency rows."""
    rows = [r for r in results.label_efficiency or [] if r.model]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: (str(r.dataset), str(r.task), probe_rank(probe_kind(r)),
                                       -(r.aulc if is_num(r.aulc) else -math.inf), str(r.model)))
    table_rows = []
    for r in rows:
        frac = r.fraction_to_95pct
        if not is_num(frac):
            reading = None
        elif frac <= EFFICIENT_FRACTION:
            reading = Tag("label-efficient", "good")
        elif frac >= HUNGRY_FRACTION:
            reading = Tag("label-hungry", "risk")
        else:
            reading = ""
        table_rows.append([r.dataset, r.task, probe_label(probe_kind(r)), r.model, fmt(r.aulc),
                           fraction_label(frac, None) if is_num(frac) else DASH, reading])
    return Table(["dataset", "task", "probe", "model", "AULC", "labels for 95% of full-data score", "reading"],
                 table_rows, numeric=(4, 5))


def scarcity_section(results: Results) -> str:
    """The scarcity curve, label efficiency, then one table per model: every training-set size × every metric."""
    figure = inline_figure(*scarcity_figure(results))
    efficiency = efficiency_table(results)
    n_train = n_train_by_cell(results)
    warnings: dict[tuple, set[str]] = defaultdict(set)
    for p in (results.probes or []):
        warnings[cell_key(p)].update(p.warnings or [])
    summary = (results.summary or [])
    metrics = [m for m in METRICS + REGRESSION_METRICS if any(m in (r.metrics or {}) for r in summary)]
    tables = []
    for model in model_order(results):
        rows = sorted((r for r in summary if r.model == model),
                      key=lambda r: (r.dataset, r.task, probe_rank(probe_kind(r)), scarcity_sort(r)))
        if not rows:
            continue
        cis = [metric_ci(results, r, primary_metric([r])) for r in rows]
        has_ci = any(ci is not None for ci in cis)
        table_rows = [[r.dataset, r.task, probe_label(probe_kind(r)),
                       fraction_label(r.train_fraction, r.k_shot), n_train.get(cell_key(r), DASH),
                       r.n_seeds] + [fmt_pm(metric_stats(r, m)) for m in metrics]
                      + ([fmt_ci(ci)] if has_ci else []) + ["; ".join(sorted(warnings[cell_key(r)])) or ""]
                      for r, ci in zip(rows, cis)]
        tables.append((model, Table(["dataset", "task", "probe", "training set", "n_train", "seeds"]
                                    + [METRIC_LABELS[m] for m in metrics]
                                    + (["95% CI of the seed mean (main metric)"] if has_ci else []) + ["probe warnings"],
                                    table_rows, numeric=range(4, 6 + len(metrics) + int(has_ci)))))
    return render("scarcity.html.j2", v=Scarcity(figure, efficiency, tables))
