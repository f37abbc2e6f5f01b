"""The leaderboard section: models ranked per (dataset, task, probe) at full data, with CIs and paired comparisons."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.findings import comparison_text, p_text
from orchestrator.report.blocks import Table
from orchestrator.report.cells import cell_key, mean_of, metric_stats, n_train_by_cell
from orchestrator.report.format import DASH, METRIC_LABELS, SECONDARY, fmt_ci, fmt_pm, fraction_label
from orchestrator.report.templating import render
from orchestrator.results import Results, SummaryRow
from orchestrator.results.queries import comparison, interval, leaderboard, leaderboard_cells, metric_ci, probe_label


def _board_note(results: Results, rank: int, row: SummaryRow, best: SummaryRow, metric: str,
                vs_best: dict | None) -> str:
    """The leaderboard note of one model: best, not clearly different from it, or clearly below it."""
    if rank == 0:
        return "best"
    if vs_best is not None:
        p = p_text(vs_best["p_value"])
        if not vs_best["clear"]:
            return f"not clearly different from the best (paired bootstrap {p})"
        return f"clearly below the best (paired bootstrap {p})" if vs_best["side"] == -1 else \
            f"clearly different from the best (paired bootstrap {p})"
    iv, best_iv = interval(results, row, metric), interval(results, best, metric)
    if best_iv is not None and iv is not None and iv[1] >= best_iv[0]:
        return "not clearly different from the best (intervals overlap)"
    return ""


@dataclass(frozen=True)
class Board:
    """One ranked table: the probe kind, the training fraction it was trained on, the table."""

    probe: str
    trained_on: str
    table: Table


@dataclass(frozen=True)
class Group:
    """The boards of one (dataset, task), one per probe kind."""

    dataset: str
    task: str
    boards: list[Board]


def _board_table(results: Results, dataset: str, task: str, probe: str, n_train: dict) -> tuple[Table, float | None]:
    """One ranked table for a (dataset, task, probe kind) at its largest training fraction, and that fraction."""
    top, metric, ranked = leaderboard(results, dataset, task, probe)
    label = METRIC_LABELS.get(metric, metric)
    cis = {r.model: metric_ci(results, r, metric) for r in ranked}
    has_ci = any(ci is not None for ci in cis.values())
    best = ranked[0]
    vs = {r.model: comparison(results, dataset, task, probe, top, r.model, best.model, metric)
          for r in ranked[1:]}
    has_cmp = any(c is not None for c in vs.values())
    secondary = SECONDARY.get(metric, ())
    rows, classes = [], []
    for i, r in enumerate(ranked):
        defined = mean_of(r, metric) is not None
        note = _board_note(results, i, r, best, metric, vs.get(r.model)) if defined else f"{label} undefined"
        c = vs.get(r.model)
        rows.append([str(i + 1) if defined else DASH, r.model, fmt_pm(metric_stats(r, metric))]
                    + ([fmt_ci(cis[r.model])] if has_ci else [])
                    + [fmt_pm(metric_stats(r, m)) for m in secondary]
                    + [n_train.get(cell_key(r), DASH), r.n_seeds]
                    + ([comparison_text(c, metric) if c is not None else DASH] if has_cmp else []) + [note])
        classes.append("best" if i == 0 and defined else "")
    headers = (["rank", "model", f"{label} (mean \u00b1 SD)"] + (["95% CI of the seed mean (patient bootstrap)"] if has_ci else [])
               + [METRIC_LABELS.get(m, m) for m in secondary] + ["n_train", "seeds"]
               + (["vs best (paired, on the same patients)"] if has_cmp else []) + ["note"])
    numeric = [0] + list(range(2, len(headers) - 1 - int(has_cmp)))
    return Table(headers, rows, numeric=numeric, row_classes=classes), top


def leaderboard_section(results: Results) -> str:
    """Per (dataset, task) and probe kind: models ranked by the primary metric at the largest training fraction."""
    n_train = n_train_by_cell(results)
    cells = leaderboard_cells(results)
    groups = []
    for dataset, task in dict.fromkeys((d, t) for d, t, _ in cells):
        boards = []
        for probe in (p for d, t, p in cells if (d, t) == (dataset, task)):
            table, top = _board_table(results, dataset, task, probe, n_train)
            boards.append(Board(probe_label(probe), fraction_label(top, None), table))
        groups.append(Group(dataset, task, boards))
    return render("leaderboard.html.j2", groups=groups)
