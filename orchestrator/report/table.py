"""The plain-text results table printed in the terminal."""
from __future__ import annotations

from typing import Any, Mapping

from orchestrator.report.cells import cell_key, mean_of, metric_stats, n_train_by_cell, probe_rank, scarcity_sort
from orchestrator.report.format import DASH, fmt, fmt_pm, fraction_label, or_dash
from orchestrator.results import Results
from orchestrator.results.queries import model_order, probe_kind, probe_label


def results_table(results: Results | Mapping[str, Any]) -> str:
    """Plain-text table, one row per (model, dataset, task, probe, training set): n_train and metric means."""
    results = Results.coerce(results)
    n_train = n_train_by_cell(results)
    summary = (results.summary or [])
    regression = any(mean_of(r, "r2") is not None for r in summary)
    header = ["model", "dataset", "task", "probe", "train", "n_train", "seeds", "AUROC (mean \u00b1 sd)",
              "AUPRC", "F1", "bal. acc"] + (["R\u00b2 (mean \u00b1 sd)", "MAE"] if regression else [])
    rank = {m: i for i, m in enumerate(model_order(results))}
    rows = sorted(summary, key=lambda r: (rank.get(r.model, 0), r.model, r.dataset, r.task,
                                          probe_rank(probe_kind(r)), scarcity_sort(r)))
    lines = [[r.model, r.dataset, r.task, probe_label(probe_kind(r)),
              fraction_label(r.train_fraction, r.k_shot),
              n_train.get(cell_key(r), DASH), str(or_dash(r.n_seeds)),
              fmt_pm(metric_stats(r, "auroc_macro")), fmt(mean_of(r, "auprc_macro")), fmt(mean_of(r, "f1_macro")),
              fmt(mean_of(r, "balanced_accuracy"))]
             + ([fmt_pm(metric_stats(r, "r2")), fmt(mean_of(r, "mae"))] if regression else []) for r in rows]
    if not lines:
        return "no probe results"
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    numeric = set(range(5, len(header)))  # right-align numbers so decimals line up

    def render(cells: list[str]) -> str:
        """One padded line."""
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), "  ".join("-" * w for w in widths)] + [render(x) for x in lines])
