"""The answer first: one row per model with the numbers a reader asks for, as a table and a heatmap.

Every value is read from results.json, on one cell: the first (dataset, task) of the leaderboard with its
linear probe at the largest training fraction (other cells are in the sections below). Columns:
accuracy (macro AUROC, seed mean, with its 95% CI), the margin over the random-init control, label
efficiency (AULC), transfer gap, robustness (mean AUROC drop and mean cosine over the perturbations at
their most severe grade), the worst subgroup gap, calibration (ECE) and site separability.
"""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.report.blocks import Table, inline_figure
from orchestrator.report.format import DASH, fmt, fmt_ci
from orchestrator.report.templating import render
from orchestrator.results import Results
from orchestrator.results.queries import (is_num, leaderboard, leaderboard_cells, metric_ci, metric_mean, model_order,
                                          probe_label, site_separability)


@dataclass(frozen=True)
class Column:
    """One heatmap column: how to read its value as 0 (bad) .. 1 (good), on a fixed scale."""

    key: str
    title: str
    good: float  # the value coloured best
    bad: float  # the value coloured worst

    def score(self, value: float | None) -> float | None:
        """The value on the 0..1 colour scale (clipped); None stays None."""
        if not is_num(value):
            return None
        return min(1.0, max(0.0, (value - self.bad) / (self.good - self.bad)))


COLUMNS = (
    Column("auroc", "AUROC", 1.0, 0.5),
    Column("vs_control", "vs random-init", 0.2, 0.0),
    Column("aulc", "label efficiency (AULC)", 1.0, 0.5),
    Column("transfer_gap", "transfer gap", 0.0, 0.15),
    Column("robust_drop", "AUROC drop under noise", 0.0, 0.2),
    Column("robust_cosine", "cosine under noise", 1.0, 0.8),
    Column("subgroup_gap", "worst subgroup gap", 0.0, -0.15),
    Column("ece", "ECE", 0.0, 0.3),
    Column("site_separability", "site separability", 0.5, 1.0),
)


@dataclass
class GlanceRow:
    """One model's headline numbers (None where the run did not measure it)."""

    model: str
    values: dict[str, float | None]
    auroc_ci: tuple[float, float] | None = None
    worst_group: str | None = None
    worst_perturbation: str | None = None


@dataclass(frozen=True)
class Glance:
    """What templates/glance.html.j2 shows."""

    dataset: str
    task: str
    probe: str
    fraction: str
    control: str | None
    table: Table
    heatmap: object | None
    n_robust: int | None
    more_cells: int


def control_model(results: Results) -> str | None:
    """The random-init control: the first model whose name or objective says random initialisation."""
    for m in results.models or []:
        text = f"{m.name} {m.objective or ''}".lower()
        if "random" in text:
            return m.name
    return None


def _cell(results: Results) -> tuple[str, str, str] | None:
    """The (dataset, task, probe) the summary reads: the first classification cell of the leaderboard, its linear
    probe if any."""
    cells = leaderboard_cells(results)
    # A classification task first (regression targets such as age are scored by R², not AUROC).
    classified = [c for c in cells if leaderboard(results, *c)[1] == "auroc_macro"]
    if not cells:
        return None
    dataset, task, _ = (classified or cells)[0]
    probes = [p for d, t, p in cells if (d, t) == (dataset, task)]
    return dataset, task, "linear" if "linear" in probes else probes[0]


def _robustness(results: Results, model: str, dataset: str, task: str) -> tuple[float | None, float | None, str | None]:
    """Mean AUROC drop and mean cosine over the perturbations at their most severe grade; the worst one."""
    rows = [r for r in results.robustness or [] if (r.model, r.dataset, r.task) == (model, dataset, task)
            and r.perturbation != "identity"]
    top: dict[str, object] = {}
    for r in rows:
        if r.perturbation not in top or (r.severity or 0) > (top[r.perturbation].severity or 0):
            top[r.perturbation] = r
    drops = [(r.auroc_drop, p) for p, r in top.items() if is_num(r.auroc_drop)]
    cosines = [r.cosine for r in top.values() if is_num(r.cosine)]
    worst = max(drops)[1] if drops else None
    return (sum(d for d, _ in drops) / len(drops) if drops else None,
            sum(cosines) / len(cosines) if cosines else None, worst)


def glance_rows(results: Results) -> tuple[tuple[str, str, str, float | None] | None, list[GlanceRow]]:
    """The cell read ((dataset, task, probe, fraction) or None) and one GlanceRow per model."""
    cell = _cell(results)
    if cell is None:
        return None, []
    dataset, task, probe = cell
    top, metric, ranked = leaderboard(results, dataset, task, probe)
    by_model = {r.model: r for r in ranked}
    control = control_model(results)
    control_score = metric_mean(by_model[control], metric) if control in by_model else None
    out = []
    for model in model_order(results):
        row = by_model.get(model)
        score = metric_mean(row, metric) if row else None
        values: dict[str, float | None] = {"auroc": score}
        values["vs_control"] = (score - control_score if is_num(score) and is_num(control_score)
                                and model != control else None)
        values["aulc"] = next((e.aulc for e in results.label_efficiency or []
                               if (e.model, e.dataset, e.task, e.probe) == (model, dataset, task, probe)), None)
        values["transfer_gap"] = next((g.gap for g in results.transfer_gap or [] if g.model == model), None)
        values["robust_drop"], values["robust_cosine"], worst_perturbation = _robustness(results, model, dataset,
                                                                                          task)
        groups = [s for s in results.subgroups or [] if (s.model, s.dataset, s.task, s.probe) ==
                  (model, dataset, task, probe) and is_num(s.gap)]
        worst = min(groups, key=lambda s: s.gap) if groups else None
        values["subgroup_gap"] = worst.gap if worst else None
        values["ece"] = metric_mean(row, "ece") if row else None
        rep = next((r for r in results.representations or [] if (r.model, r.dataset) == (model, dataset)), None)
        values["site_separability"] = site_separability(rep) if rep else None
        out.append(GlanceRow(model, values, metric_ci(results, row, metric) if row else None,
                             f"{worst.attribute}={worst.group}" if worst else None, worst_perturbation))
    return (dataset, task, probe, top), out


def _table(rows: list[GlanceRow], keys: list[str]) -> Table:
    """The headline table; a column the run did not measure is left out."""
    titles = {c.key: c.title for c in COLUMNS}
    body = []
    for r in rows:
        line = [r.model]
        for key in keys:
            text = fmt(r.values.get(key))
            if key == "auroc" and r.auroc_ci:
                text += f" {fmt_ci(r.auroc_ci)}"
            if key == "subgroup_gap" and r.worst_group and is_num(r.values.get(key)):
                text += f" ({r.worst_group})"
            if key == "robust_drop" and r.worst_perturbation and is_num(r.values.get(key)):
                text += f" (worst: {r.worst_perturbation})"
            line.append(text if text != DASH else None)
        body.append(line)
    return Table(["model"] + [titles[k] for k in keys], body, numeric=tuple(range(1, len(keys) + 1)))


def glance_section(results: Results) -> str:
    """The one-screen answer: per model, the headline numbers as a table and a heatmap; '' without probes."""
    from orchestrator.report.charts import glance_heatmap

    cell, rows = glance_rows(results)
    if cell is None or not rows:
        return ""
    keys = [c.key for c in COLUMNS if any(is_num(r.values.get(c.key)) for r in rows)]
    dataset, task, probe, top = cell
    png = glance_heatmap(rows, [c for c in COLUMNS if c.key in keys])
    n_robust = max((r.n or 0 for r in results.robustness or [] if r.dataset == dataset), default=None)
    more = len({(d, t) for d, t, _ in leaderboard_cells(results)}) - 1
    caption = ("Each cell coloured on a fixed scale from worst (dark) to best (bright); the number is the value. "
               "Scales: AUROC 0.5-1, margin over random-init 0-0.2, AULC 0.5-1, transfer gap 0.15-0, AUROC drop "
               "0.2-0, cosine 0.8-1, worst subgroup gap -0.15-0, ECE 0.3-0, site separability 1-0.5.")
    return render("glance.html.j2", v=Glance(
        dataset, task, probe_label(probe), fmt(top * 100, 0) + "%" if is_num(top) else DASH,
        control_model(results), _table(rows, keys), inline_figure(png, caption) if png else None,
        n_robust or None, max(0, more)))

