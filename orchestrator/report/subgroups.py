"""The subgroups and calibration section: is each model as good for every patient group, and are its probes'
probabilities honest?"""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.report.blocks import InlineFigure, Table, Tag, inline_figures
from orchestrator.report.format import fmt, fmt_ci
from orchestrator.report.templating import render
from orchestrator.results import Results, SubgroupRow
from orchestrator.results.queries import is_num, model_order, probe_label

ECE_RISK = 0.1  # probabilities off by ten points on average


@dataclass(frozen=True)
class Subgroups:
    """What templates/subgroups.html.j2 shows."""

    groups: Table | None
    more: Table | None
    calibration: Table | None
    figures: list[InlineFigure]
    min_records: int | None


def _gap_tag(row: SubgroupRow) -> Tag | None:
    """'worse for this group' when the gap's CI lies below 0, 'better' above 0, else nothing."""
    ci = row.gap_ci
    if not ci or not all(is_num(v) for v in ci):
        return None
    if ci[1] < 0:
        return Tag("worse for this group", "risk")
    return Tag("better for this group", "good") if ci[0] > 0 else None


def _group_table(results: Results, rows: list[SubgroupRow]) -> Table | None:
    order = {m: i for i, m in enumerate(model_order(results))}
    rows = sorted(rows, key=lambda r: (order.get(r.model, len(order)), str(r.dataset), str(r.task), str(r.probe),
                                       str(r.attribute), str(r.group)))
    if not rows:
        return None
    body = [[r.model, probe_label(str(r.probe)), r.attribute, r.group, r.n, fmt(r.auroc_macro), fmt_ci(
        tuple(r.ci) if r.ci else None), fmt(r.overall), fmt(r.gap), fmt_ci(tuple(r.gap_ci) if r.gap_ci else None),
             _gap_tag(r)] for r in rows]
    return Table(["model", "probe", "attribute", "group", "n test", "AUROC", "95% CI", "overall", "gap", "gap 95% CI",
                  "reading"], body, numeric=(4, 5, 7, 8))


def _calibration_table(results: Results) -> Table | None:
    order = {m: i for i, m in enumerate(model_order(results))}
    rows = sorted(results.calibration or [], key=lambda c: (order.get(c.model, len(order)), str(c.dataset),
                                                             str(c.task), str(c.probe)))
    if not rows:
        return None
    body = [[c.model, c.dataset, c.task, probe_label(str(c.probe)), fmt(c.ece), fmt(c.brier),
             Tag("over- or under-confident", "warn") if is_num(c.ece) and c.ece >= ECE_RISK else None] for c in rows]
    return Table(["model", "dataset", "task", "probe", "ECE", "Brier", "reading"], body, numeric=(4, 5))


def subgroups_section(results: Results) -> str:
    """Per-subgroup AUROC with CIs and gaps, calibration per probe, reliability diagrams; '' without data."""
    from orchestrator.report.charts import reliability_figures

    rows = [r for r in results.subgroups or [] if r.model and r.group is not None]
    if not rows and not results.calibration:
        return ""
    linear = [r for r in rows if r.probe == "linear"] or rows
    others = [r for r in rows if r not in linear]
    figs = [{"name": n, "png": png, "caption": c} for n, png, c in reliability_figures(results)]
    min_records = ((results.experiment or {}).get("subgroups") or {}).get("min_records")
    return render("subgroups.html.j2", v=Subgroups(_group_table(results, linear), _group_table(results, others),
                                                   _calibration_table(results), inline_figures(figs), min_records),
                  ece_risk=ECE_RISK)
