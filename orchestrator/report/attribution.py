"""The lead-attribution block of the representations section: shares, clinical verdicts, method."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from orchestrator.attribution.clinical import AGREES, DISAGREES, PARTLY, lead_verdicts
from orchestrator.report.format import fmt, plain_text
from orchestrator.report.markup import Raw, badge, details_html, esc, figures_html, html_table, para
from orchestrator.results import Representation
from orchestrator.results.queries import is_num


def _method_line(a: dict) -> str:
    """How the lead attribution was computed, in one escaped line; '' when unknown."""
    labels = (("explainer", "explainer"), ("baseline", "masked signal replaced by"), ("background", "background"),
              ("nsamples", "coalitions per ECG"), ("groups", "feature groups"), ("n_ecgs", "test ECGs explained"),
              ("n_embeddings", "embeddings computed"))
    items = [f"{label}: {plain_text(a[k])}" for k, label in labels if a.get(k) is not None]
    return para("Method \u2014 " + "; ".join(items) + ".", "note") if items else ""


def _lead_table(importance: dict) -> str:
    """Leads as columns, each one's share of the attribution; the three largest in bold."""
    values = {str(k): v for k, v in importance.items() if is_num(v)}
    if not values:
        return ""
    top = set(sorted(values, key=lambda k: -values[k])[:3])
    cells = [Raw(f"<b>{v * 100:.1f}%</b>" if k in top else f"{v * 100:.1f}%") for k, v in values.items()]
    return html_table(list(values), [cells], numeric=range(len(values)))


_BADGES = {AGREES: ("agrees", "good"), PARTLY: ("partly", "warn"), DISAGREES: ("does not agree", "risk")}


def _clinical_list(notes: Sequence[str], per_class: Mapping[str, Any]) -> str:
    """Clinical notes as a list, each with a badge for its class's verdict (re-derived from the numbers)."""
    verdicts = lead_verdicts({c: v for c, v in per_class.items() if isinstance(v, Mapping)})
    items = []
    for note in notes:
        verdict = next((v for v in verdicts if str(note).startswith(f"{v.class_name}:")), None)
        badge_ = _BADGES.get(verdict.status if verdict else "", ("no expectation", ""))
        items.append(f"<li>{badge(*badge_)} {esc(note)}</li>")
    return f'<ul class="notes">{"".join(items)}</ul>' if items else ""


def _matrix_table(per_class: dict, corner: str) -> str:
    """A class × column table of numbers (lead or segment importance); '' when empty."""
    classes = [c for c, v in per_class.items() if isinstance(v, dict)]
    columns = list(dict.fromkeys(k for c in classes for k in per_class[c]))
    if not classes or not columns:
        return ""
    rows = [[c] + [fmt(per_class[c].get(k), 3) for k in columns] for c in classes]
    return html_table([corner] + columns, rows, numeric=range(1, len(columns) + 1))


def attribution_block(reps: list[Representation], figs: list[dict]) -> str:
    """Which leads drive the probe: shares, heatmap, clinical plausibility and method; '' when none."""
    parts = []
    for r in reps:
        s = r.shap or {}
        if not any(s.get(k) for k in ("lead_importance", "lead_importance_per_class", "clinical_notes")):
            continue
        parts.append(_method_line(s.get("attribution") or {}))
        lead = _lead_table(s.get("lead_importance") or {})
        if lead:
            parts.append(f"<p>Share of the attribution per lead on {esc(r.dataset)} (mean over classes):</p>{lead}")
        if s.get("clinical_notes"):
            notes = _clinical_list(s["clinical_notes"], s.get("lead_importance_per_class") or {})
            parts.append("<p>Do the leads match the textbook?</p>" + notes)
        detail = _matrix_table(s.get("lead_importance_per_class") or {}, "class \\ lead")
        detail += _matrix_table(s.get("segment_importance_per_class") or {}, "class \\ segment")
        if detail:
            parts.append(details_html("Per-class lead and time-segment importance (mean |SHAP|)", detail))
    lead_figs = [f for f in figs if f.get("kind") == "leads"]
    if not parts and not lead_figs:
        return ""
    intro = para("The probe's decision was traced back through the model to the ECG itself: leads and time segments "
               "were masked and the change in the probe's output measured (Shapley values). This shows which leads "
               "the model-plus-probe uses for each class, to compare with where a cardiologist would look.")
    return "<h4>Which ECG leads drive the decisions</h4>" + intro + figures_html(lead_figs) + "".join(parts)
