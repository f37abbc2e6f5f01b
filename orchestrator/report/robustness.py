"""The robustness section: how each model's embedding and probe hold up when the ECG is corrupted."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.report.blocks import InlineFigure, Table, Tag, inline_figures
from orchestrator.report.format import fmt
from orchestrator.report.templating import render
from orchestrator.results import Results, RobustnessRow
from orchestrator.results.queries import is_num, model_order

DROP_RISK = 0.1  # an AUROC loss this large at the most severe grade reads as fragile
DROP_OK = 0.02


@dataclass(frozen=True)
class Robustness:
    """What templates/robustness.html.j2 shows."""

    figures: list[InlineFigure]
    overview: Table
    rows: Table
    n: int
    floor: str | None  # the identity copies' cosine range: the served path's own noise floor


def _reading(drop: float | None) -> Tag | None:
    if not is_num(drop):
        return None
    if drop >= DROP_RISK:
        return Tag("fragile", "risk")
    return Tag("robust", "good") if drop <= DROP_OK else Tag("some loss", "warn")


def _overview(results: Results, rows: list[RobustnessRow]) -> Table:
    """Per model x dataset x task x perturbation: the most severe grade's cosine and AUROC drop."""
    order = {m: i for i, m in enumerate(model_order(results))}
    top: dict[tuple, RobustnessRow] = {}
    for r in rows:
        key = (r.model, r.dataset, r.task, r.perturbation)
        if key not in top or (r.severity or 0) > (top[key].severity or 0):
            top[key] = r
    body = [[r.model, r.perturbation, r.level, fmt(r.cosine), fmt(r.auroc_clean), fmt(r.auroc_macro),
             fmt(r.auroc_drop), _reading(r.auroc_drop)]
            for r in sorted(top.values(), key=lambda r: (order.get(r.model, len(order)), str(r.dataset), str(r.task)))]
    return Table(["model", "perturbation", "most severe grade", "cosine to clean", "AUROC clean", "AUROC perturbed",
                  "AUROC drop", "reading"], body, numeric=(3, 4, 5, 6))


def robustness_section(results: Results) -> str:
    """Perturbation curves per model, the most severe grade per perturbation, every row; '' without rows."""
    from orchestrator.report.charts import robustness_figures

    rows = [r for r in results.robustness or [] if r.model and r.perturbation]
    if not rows:
        return ""
    same = [r.cosine for r in rows if r.perturbation == "identity" and is_num(r.cosine)]
    floor = f"{min(same):.6f}" + (f" to {max(same):.6f}" if max(same) != min(same) else "") if same else None
    graded = [r for r in rows if r.perturbation != "identity"]
    every = Table(["model", "dataset", "task", "perturbation", "grade", "level", "n", "cosine", "AUROC", "AUROC drop"],
                  [[r.model, r.dataset, r.task, r.perturbation, r.severity, r.level, r.n, fmt(r.cosine),
                    fmt(r.auroc_macro), fmt(r.auroc_drop)] for r in rows], numeric=(4, 6, 7, 8, 9))
    figs = [{"name": n, "png": png, "caption": c} for n, png, c in robustness_figures(results)]
    return render("robustness.html.j2", v=Robustness(inline_figures(figs), _overview(results, graded), every,
                                                     max(r.n or 0 for r in rows), floor), drop_risk=DROP_RISK,
                  drop_ok=DROP_OK)
