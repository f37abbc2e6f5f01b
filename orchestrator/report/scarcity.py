"""The data-scarcity section: scarcity curves, label efficiency and per-model tables of every metric."""
from __future__ import annotations

import math
from collections import defaultdict

from orchestrator.findings import EFFICIENT_FRACTION, HUNGRY_FRACTION
from orchestrator.report.cells import cell_key, metric_stats, n_train_by_cell, probe_rank, scarcity_sort
from orchestrator.report.figures import scarcity_figure
from orchestrator.report.format import (DASH, METRICS, METRIC_LABELS, REGRESSION_METRICS, fmt, fmt_ci, fmt_pm,
                                        fraction_label)
from orchestrator.report.markup import Raw, badge, esc, figure_html, html_table, para
from orchestrator.results import Results
from orchestrator.results.queries import is_num, metric_ci, model_order, primary_metric, probe_kind, probe_label


def efficiency_table(results: Results) -> str:
    """AULC and labels needed for 95% of the full-data score; '' without label_efficiency rows."""
    rows = [r for r in results.label_efficiency or [] if r.model]
    if not rows:
        return ""
    rows = sorted(rows, key=lambda r: (str(r.dataset), str(r.task), probe_rank(probe_kind(r)),
                                       -(r.aulc if is_num(r.aulc) else -math.inf), str(r.model)))
    table_rows = []
    for r in rows:
        frac = r.fraction_to_95pct
        if not is_num(frac):
            reading = Raw(DASH)
        elif frac <= EFFICIENT_FRACTION:
            reading = Raw(badge("label-efficient", "good"))
        elif frac >= HUNGRY_FRACTION:
            reading = Raw(badge("label-hungry", "risk"))
        else:
            reading = ""
        table_rows.append([r.dataset, r.task, probe_label(probe_kind(r)), r.model, fmt(r.aulc),
                           fraction_label(frac, None) if is_num(frac) else DASH, reading])
    return ("<h3>Label efficiency</h3>"
            + para("AULC: the mean score over the training fractions on a log scale (higher = better with few labels; "
                 "compare only rows with the same fractions). Labels for 95%: the smallest training fraction at "
                 "which the probe reaches 95% of its full-data score.")
            + html_table(["dataset", "task", "probe", "model", "AULC", "labels for 95% of full-data score", "reading"],
                     table_rows, numeric=(4, 5)))


def scarcity_section(results: Results) -> str:
    """The scarcity curve, label efficiency, then one table per model: every training-set size × every metric."""
    png, caption = scarcity_figure(results)
    parts = ['<section id="scarcity"><h2>Data scarcity</h2>',
             para("How each model's probe copes with fewer labelled ECGs. Values are mean \u00b1 SD over seeds "
                "on the same held-out test split."), figure_html(png, caption), efficiency_table(results)]
    n_train = n_train_by_cell(results)
    warnings: dict[tuple, set[str]] = defaultdict(set)
    for p in (results.probes or []):
        warnings[cell_key(p)].update(p.warnings or [])
    summary = (results.summary or [])
    metrics = [m for m in METRICS + REGRESSION_METRICS if any(m in (r.metrics or {}) for r in summary)]
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
        parts.append(f"<h3>{esc(model)}</h3>")
        parts.append(html_table(["dataset", "task", "probe", "training set", "n_train", "seeds"]
                            + [METRIC_LABELS[m] for m in metrics] + (["95% CI (main metric)"] if has_ci else [])
                            + ["probe warnings"], table_rows, numeric=range(4, 6 + len(metrics) + int(has_ci))))
    return "".join(parts) + "</section>"
