"""The summary section: one card of findings (strengths, risks, notes) per model."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.findings import (COLLAPSE_SHARE, GAP_RISK, JACCARD_FRAGILE, JACCARD_STABLE, KINDS, SITE_OK,
                                   SITE_RISK, findings)
from orchestrator.report.templating import render
from orchestrator.results import Finding, Results
from orchestrator.results.queries import model_order


@dataclass(frozen=True)
class Card:
    """One model's findings, strengths first, and a tally such as '2 strengths, 1 risk'."""

    model: str
    tally: str
    findings: list[Finding]


@dataclass(frozen=True)
class Rules:
    """The findings' thresholds, quoted in the section's introduction."""

    site_risk: float = SITE_RISK
    site_ok: float = SITE_OK
    gap_risk: float = GAP_RISK
    jaccard_fragile: float = JACCARD_FRAGILE
    jaccard_stable: float = JACCARD_STABLE
    collapse_percent: float = COLLAPSE_SHARE * 100


def page_findings(results: Results) -> list[Finding]:
    """results.findings when it is a list (schema 1.1; [] = none), else derived from the numbers."""
    rows = results.findings if isinstance(results.findings, list) else findings(results)
    return [f for f in rows if isinstance(f, Finding) and f.text and f.kind in KINDS]


def summary_section(results: Results) -> str:
    """One card per model with its strengths, risks and notes in plain words; '' when there are none."""
    rows = page_findings(results)
    if not rows:
        return ""
    models = model_order(results)
    models += [m for m in dict.fromkeys(str(f.model) for f in rows) if m not in models]
    cards = []
    for model in models:
        mine = sorted((f for f in rows if str(f.model) == model), key=lambda f: KINDS.index(f.kind))
        if not mine:
            continue
        tally = {k: sum(f.kind == k for f in mine) for k in KINDS}
        cards.append(Card(model, ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in tally.items() if n), mine))
    return render("summary.html.j2", cards=cards, rules=Rules())
