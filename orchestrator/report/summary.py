"""The summary section: one card of findings (strengths, risks, notes) per model."""
from __future__ import annotations

from orchestrator.findings import (COLLAPSE_SHARE, GAP_RISK, JACCARD_FRAGILE, JACCARD_STABLE, KINDS, SITE_OK,
                                   SITE_RISK, findings)
from orchestrator.report.markup import esc, para
from orchestrator.results import Finding, Results
from orchestrator.results.queries import model_order


ICONS = {"strength": "\u2713", "risk": "\u26a0", "note": "\u2022"}


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
        items = "".join(f'<li class="k-{esc(f.kind)}"><span class="icon" title="{esc(f.kind)}">'
                        f"{ICONS[f.kind]}</span>{esc(f.text)}</li>" for f in mine)
        tally = {k: sum(f.kind == k for f in mine) for k in KINDS}
        counts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in tally.items() if n)
        cards.append(f'<div class="card"><h3>{esc(model)}</h3><p class="note">{esc(counts)}</p>'
                     f'<ul class="findings">{items}</ul></div>')
    intro = para("What the numbers below say about each model, in plain words: \u2713 strength, \u26a0 risk, "
               "\u2022 note. Each sentence quotes the number it rests on. Rules of thumb: site separability above "
               f"{SITE_RISK:g} is a risk and below {SITE_OK:g} a strength; an out-of-domain loss of "
               f"{GAP_RISK:g} AUROC or more is a risk; top-dimension overlap (Jaccard) below "
               f"{JACCARD_FRAGILE:g} is fragile and from {JACCARD_STABLE:g} stable; an effective rank below "
               f"{COLLAPSE_SHARE * 100:g}% of the embedding size signals collapse.")
    return f'<section id="summary"><h2>Summary per model</h2>{intro}<div class="cards">{"".join(cards)}</div></section>'
