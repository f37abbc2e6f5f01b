"""The lead-attribution block of the representations section: shares, clinical verdicts, method."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from orchestrator.attribution.clinical import AGREES, DISAGREES, PARTLY, lead_verdicts
from orchestrator.report.blocks import InlineFigure, Strong, Table, Tag, inline_figures
from orchestrator.report.format import fmt, plain_text
from orchestrator.results import Representation
from orchestrator.results.queries import is_num


@dataclass(frozen=True)
class LeadAttribution:
    """One dataset's lead attribution: method, shares per lead, clinical notes, per-class detail tables."""

    dataset: str | None
    method: str | None
    leads: Table | None
    notes: list[tuple[Tag, str]]
    details: list[Table]


@dataclass(frozen=True)
class Attribution:
    """Which leads drive one model's decisions: the lead figures and one LeadAttribution per dataset."""

    figures: list[InlineFigure]
    datasets: list[LeadAttribution]


def _method(a: dict) -> str | None:
    """How the lead attribution was computed, in one line; None when unknown."""
    labels = (("explainer", "explainer"), ("baseline", "masked signal replaced by"), ("background", "background"),
              ("nsamples", "coalitions per ECG"), ("groups", "feature groups"), ("n_ecgs", "test ECGs explained"),
              ("n_embeddings", "embeddings computed"))
    return "; ".join(f"{label}: {plain_text(a[k])}" for k, label in labels if a.get(k) is not None) or None


def _lead_table(importance: dict) -> Table | None:
    """Leads as columns, each one's share of the attribution; the three largest in bold."""
    values = {str(k): v for k, v in importance.items() if is_num(v)}
    if not values:
        return None
    top = set(sorted(values, key=lambda k: -values[k])[:3])
    cells = [Strong(f"{v * 100:.1f}%") if k in top else f"{v * 100:.1f}%" for k, v in values.items()]
    return Table(list(values), [cells], numeric=range(len(values)))


_VERDICTS = {AGREES: Tag("agrees", "good"), PARTLY: Tag("partly", "warn"), DISAGREES: Tag("does not agree", "risk")}


def _clinical_notes(notes: Sequence[str], per_class: Mapping[str, Any]) -> list[tuple[Tag, str]]:
    """Clinical notes, each with a badge for its class's verdict (re-derived from the numbers)."""
    verdicts = lead_verdicts({c: v for c, v in per_class.items() if isinstance(v, Mapping)})
    out = []
    for note in notes:
        verdict = next((v for v in verdicts if str(note).startswith(f"{v.class_name}:")), None)
        out.append((_VERDICTS.get(verdict.status if verdict else "", Tag("no expectation")), note))
    return out


def _matrix_table(per_class: dict, corner: str) -> Table | None:
    """A class × column table of numbers (lead or segment importance); None when empty."""
    classes = [c for c, v in per_class.items() if isinstance(v, dict)]
    columns = list(dict.fromkeys(k for c in classes for k in per_class[c]))
    if not classes or not columns:
        return None
    rows = [[c] + [fmt(per_class[c].get(k), 3) for k in columns] for c in classes]
    return Table([corner] + columns, rows, numeric=range(1, len(columns) + 1))


def attribution(reps: list[Representation], figs: list[dict]) -> Attribution | None:
    """Which leads drive the probe: shares, heatmap, clinical plausibility and method; None when none."""
    datasets = []
    for r in reps:
        s = r.shap or {}
        if not any(s.get(k) for k in ("lead_importance", "lead_importance_per_class", "clinical_notes")):
            continue
        per_class = s.get("lead_importance_per_class") or {}
        details = [_matrix_table(per_class, "class \\ lead"),
                   _matrix_table(s.get("segment_importance_per_class") or {}, "class \\ segment")]
        datasets.append(LeadAttribution(
            dataset=r.dataset, method=_method(s.get("attribution") or {}),
            leads=_lead_table(s.get("lead_importance") or {}),
            notes=_clinical_notes(s["clinical_notes"], per_class) if s.get("clinical_notes") else [],
            details=[t for t in details if t is not None]))
    lead_figs = [f for f in figs if f.get("kind") == "leads"]
    if not datasets and not lead_figs:
        return None
    return Attribution(inline_figures(lead_figs), datasets)
