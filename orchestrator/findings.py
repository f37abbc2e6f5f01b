"""Plain-language findings per foundation model, derived deterministically from `Results` (schema 1.1).

findings(results) returns Finding rows (model, kind, text), kind one of "strength", "risk", "note", ordered by
model (results.models order, then any other name sorted), then kind (strengths, risks, notes), then
rule order below. Every sentence carries the number it rests on, so a reader can check it against the
tables. Missing or null inputs simply produce no finding; 1.0 results (no probe kinds, CIs, comparisons,
structure) still yield the leaderboard findings.

Rules and thresholds (all inclusive where written so):

- Leaderboard: per (dataset, task, probe kind) at the largest training fraction, with >= 2 models scored,
  the best model gets a strength ("highest macro AUROC ... 0.985 [0.970, 0.990]") and the worst a note.
  The primary metric is macro AUROC, or R^2 for regression tasks (no AUROC in any row). The interval is
  the 95% CI of the seed mean (summary `metrics.<m>.ci`: one patient bootstrap, every seed scored on
  each resample; a one-seed cell uses its probe row's CI), else mean +- SD over seeds. A lone model gets a note with its score.
- Comparisons: at the same cells, paired bootstrap differences (`comparisons`). A pair is "clearly
  different" only when every seed's 95% CI excludes 0 on the same side (p < 0.05 when the CI is missing);
  otherwise both models get a note "not clearly different from X (paired bootstrap p=...)". The clearly
  better model gets a strength. With several seeds the most conservative comparison (largest p) is quoted.
- Label efficiency: fraction_to_95pct <= 10% -> strength; >= 50% -> risk (label-hungry); else note.
- Transfer gap (in-domain minus out-of-domain macro AUROC): >= 0.05 -> risk; <= 0.02 -> strength; else note.
  When the in-domain AUROC is below 0.6 the gap means little (nothing to lose), so it is only a note.
- Site separability (cross-validated AUROC of predicting the acquisition source from the embedding):
  > 0.8 -> risk (sites are easy to tell apart: a generalisation risk); < 0.6 -> strength; else note.
- Effective rank relative to embedding dim: < 5% -> risk (dimensional collapse); otherwise a note.
- Concentration: a note "90% of the probe's reliance sits in n of D dimensions" (dims_for_90pct).
- SHAP stability (mean Jaccard of per-class top-k dims across seeds, training fractions, sources):
  < 0.3 -> risk; >= 0.6 -> strength; else note; each quoted against the chance Jaccard of random top-k sets.
- Clinical plausibility (LeadVerdicts from shap.lead_importance_per_class, the same verdicts that wrote
  shap.clinical_notes): any class whose top leads do not agree with the textbook expectation -> risk naming
  it; otherwise, if some classes with an expectation agree (fully or partly) -> strength "agree for n of m
  classes".
"""
from __future__ import annotations

from typing import Mapping

from orchestrator.attribution.clinical import AGREES, DISAGREES, PARTLY, lead_verdicts
from orchestrator.results import Finding, Representation, Results, SummaryRow
from orchestrator.results.queries import (PROBE_ORDER, cached, comparison, effective_rank, embedding_dims, is_num,
                                          leaderboard, leaderboard_cells, metric_ci, metric_mean, metric_std, n_test,
                                          model_order, primary_metric, probe_kind, probe_label, site_separability)

KINDS = ("strength", "risk", "note")
METRIC_NAMES = {"auroc_macro": "macro AUROC", "r2": "R\u00b2", "pearson_r": "Pearson r"}

SITE_RISK = 0.8  # above: sites are separable from the embedding alone
SITE_OK = 0.6  # below: little site signal
COLLAPSE_SHARE = 0.05  # effective rank below 5% of the embedding dim
JACCARD_FRAGILE = 0.3
JACCARD_STABLE = 0.6
GAP_RISK = 0.05
GAP_OK = 0.02
MIN_IN_DOMAIN = 0.6  # below: the probe barely works even in domain, so a small gap is no strength
EFFICIENT_FRACTION = 0.10
HUNGRY_FRACTION = 0.50
NEAR_CHANCE_AUROC = 0.6


def stability_band(jaccard: float) -> str:
    """'risk', 'strength' or 'note' for a mean top-k Jaccard."""
    return "risk" if jaccard < JACCARD_FRAGILE else "strength" if jaccard >= JACCARD_STABLE else "note"


def site_band(auroc: float) -> str:
    """'risk', 'strength' or 'note' for a site-separability AUROC."""
    return "risk" if auroc > SITE_RISK else "strength" if auroc < SITE_OK else "note"


def gap_band(gap: float) -> str:
    """'risk', 'strength' or 'note' for an in-domain minus out-of-domain AUROC gap."""
    return "risk" if gap >= GAP_RISK else "strength" if gap <= GAP_OK else "note"


# --------------------------------------------------------------------------- formatting


def _n(x: float, digits: int = 2) -> str:
    """A number to `digits` decimals."""
    return f"{x:.{digits}f}"


def pct(fraction: float) -> str:
    """0.1 -> '10%'."""
    return f"{fraction * 100:g}%"


def p_text(p: float | None) -> str:
    """'p=0.40', 'p<0.001' or 'p unknown'."""
    if p is None:
        return "p unknown"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def _where(dataset: str, task: str, probe: str | None = None) -> str:
    """'synthetic[eu,sa]/condition (linear probe)'."""
    return f"{dataset}/{task}" + (f" ({probe_label(probe)} probe)" if probe else "")


def _score(results: Results, row: SummaryRow, metric: str) -> str:
    """'0.985 [0.970, 0.990] (95% CI of the mean of 3 seeds; n = 90 test ECGs)', the method and n always said."""
    mean = metric_mean(row, metric)
    ci = metric_ci(results, row, metric)
    seeds = row.n_seeds or 1
    n = n_test(results, row)
    sample = f"n = {n} test ECGs" if n is not None else ""
    if ci is not None:
        method = f"95% CI of the mean of {seeds} seeds" if seeds > 1 else "95% CI"
        return f"{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({'; '.join(filter(None, [method, sample]))})"
    std = metric_std(row, metric)
    if std is not None and seeds > 1:
        return f"{mean:.3f} \u00b1 {std:.3f} ({'; '.join(filter(None, [f'SD over {seeds} seeds', sample]))})"
    return f"{mean:.3f}" + (f" ({sample})" if sample else "")


# --------------------------------------------------------------------------- rules


def _f(model: str, kind: str, text: str) -> Finding:
    """One finding."""
    return Finding(model=model, kind=kind, text=text)


def _leaderboard_findings(results: Results) -> list[Finding]:
    """Best, worst (or lone) model per leaderboard cell."""
    out = []
    for dataset, task, probe in leaderboard_cells(results):
        _, metric, ranked = leaderboard(results, dataset, task, probe)
        scored = [r for r in ranked if metric_mean(r, metric) is not None]
        name, where = METRIC_NAMES.get(metric, metric), _where(dataset, task, probe)
        if len(scored) == 1:
            out.append(_f(scored[0].model, "note", f"{name} on {where}: {_score(results, scored[0], metric)}"))
        elif len(scored) > 1:
            best, worst = scored[0], scored[-1]
            out.append(_f(best.model, "strength", f"highest {name} on {where} among {len(scored)} models: "
                          f"{_score(results, best, metric)}"))
            out.append(_f(worst.model, "note", f"lowest {name} on {where} among {len(scored)} models: "
                          f"{_score(results, worst, metric)}"))
    return out


def comparison_text(c: dict, metric: str) -> str:
    """'difference +0.004 [-0.010, 0.020], paired bootstrap p=0.40, n = 90 test ECGs; per-class DeLong ...'."""
    parts = []
    if c["diff"] is not None:
        ci = f" [{c['ci_low']:.3f}, {c['ci_high']:.3f}]" if is_num(c["ci_low"]) and is_num(c["ci_high"]) else ""
        what = "" if metric == "auroc_macro" else f"{METRIC_NAMES.get(metric, metric)} "  # AUROC is the default
        parts.append(f"{what}difference {c['diff']:+.3f}{ci}")
    n = c.get("n_common")
    parts.append(f"paired bootstrap {p_text(c['p_value'])}" + (f", n = {n} test ECGs" if is_num(n) else ""))
    text = ", ".join(parts)
    # delong_p is the smallest Holm-adjusted per-class DeLong p: it asks whether any class's AUROC differs,
    # not whether the macro difference quoted before it does, so it is named for what it is.
    return text + (f"; per-class DeLong tests (Holm), smallest {p_text(c['delong_p'])}"
                   if c["delong_p"] is not None else "")


def _comparison_findings(results: Results) -> list[Finding]:
    """Per model and cell: the models it is not clearly different from, and those it clearly beats."""
    if not results.comparisons:
        return []
    out = []
    for dataset, task, probe in leaderboard_cells(results):
        top, metric, ranked = leaderboard(results, dataset, task, probe)
        models = [r.model for r in ranked if metric_mean(r, metric) is not None]
        where = _where(dataset, task, probe)
        for a in models:
            same, beats = [], []
            for b in models:
                c = comparison(results, dataset, task, probe, top, a, b, metric) if a != b else None
                if c is None:
                    continue
                if not c["clear"]:
                    same.append(f"{b} ({comparison_text(c, metric)})")
                elif c["side"] == 1:
                    beats.append(f"{b} ({comparison_text(c, metric)})")
            if same:
                out.append(_f(a, "note", f"not clearly different from {'; '.join(same)} on {where}"))
            if beats:
                out.append(_f(a, "strength", f"clearly better than {'; '.join(beats)} on {where}"))
    return out


def _full_mean(cell: list[SummaryRow], model: str, score: str) -> float | None:
    """Mean macro AUROC of a model at its largest training fraction (None unless the metric is AUROC)."""
    rows = [s for s in cell if s.model == model and is_num(s.train_fraction)]
    if score != "AUROC" or not rows:
        return None
    return metric_mean(max(rows, key=lambda s: s.train_fraction), "auroc_macro")


def _efficiency_findings(results: Results) -> list[Finding]:
    """Fraction of labels needed to reach 95% of the full-data score."""
    out = []
    rows = sorted(results.label_efficiency or [],
                  key=lambda r: (str(r.dataset), str(r.task), PROBE_ORDER.index(probe_kind(r))
                                 if probe_kind(r) in PROBE_ORDER else 9, probe_kind(r)))
    for r in rows:
        frac = r.fraction_to_95pct
        if not is_num(frac):
            continue
        cell = [s for s in results.summary or [] if (s.dataset, s.task, probe_kind(s))
                == (r.dataset, r.task, probe_kind(r))]
        score = "AUROC" if primary_metric(cell) == "auroc_macro" else "score"
        aulc = f"; AULC {_n(r.aulc)}" if is_num(r.aulc) else ""
        where = f"{r.dataset}/{r.task} ({probe_label(probe_kind(r))} probe{aulc})"
        full = _full_mean(cell, r.model, score)
        if full is not None and full < NEAR_CHANCE_AUROC:
            # Reaching 95% of a near-chance score says nothing about label efficiency.
            out.append(_f(r.model, "note", f"label efficiency on {where} is not informative: its full-data "
                          f"AUROC is only {_n(full)}"))
            continue
        if frac <= EFFICIENT_FRACTION:
            out.append(_f(r.model, "strength", f"reaches 95% of its full-data {score} with {pct(frac)} of the "
                          f"labels on {where}"))
        elif frac >= HUNGRY_FRACTION:
            out.append(_f(r.model, "risk", f"needs {pct(frac)} of the labels to reach 95% of its full-data "
                          f"{score} on {where}: label-hungry"))
        else:
            out.append(_f(r.model, "note", f"reaches 95% of its full-data {score} with {pct(frac)} of the "
                          f"labels on {where}"))
    return out


def _transfer_findings(results: Results) -> list[Finding]:
    """In-domain vs out-of-domain AUROC per model and task."""
    out = []
    for r in sorted(results.transfer_gap or [], key=lambda r: (str(r.model), str(r.task))):
        gap, inside, outside = r.gap, r.in_domain, r.out_of_domain
        if not is_num(gap):
            continue
        both = f"in-domain {_n(inside)}, out-of-domain {_n(outside)}" if is_num(inside) and is_num(outside) else ""
        band = gap_band(gap)
        if is_num(inside) and inside < MIN_IN_DOMAIN:
            out.append(_f(r.model, "note", f"out-of-domain gap {_n(gap)} on {r.task} is not informative: "
                          f"in-domain AUROC is only {_n(inside)}"))
            continue
        if band == "strength":
            text = f"keeps its AUROC out of domain on {r.task} (gap {_n(gap)}" + (f"; {both})" if both else ")")
        else:
            text = f"loses {_n(gap)} AUROC out of domain on {r.task}" + (f" ({both})" if both else "")
            text += ": it may not carry over to new sites" if band == "risk" else ""
        out.append(_f(r.model, band, text))
    return out


def _site_finding(rep: Representation) -> list[Finding]:
    """Can the acquisition site be read off the embedding?"""
    auroc = site_separability(rep)
    if auroc is None:
        return []
    per = {k: v for k, v in ((rep.structure or {}).get("site_per_source") or {}).items() if is_num(v)}
    most = max(sorted(per), key=lambda s: per[s]) if per else None
    where = f" on {rep.dataset}"
    band = site_band(auroc)
    if band == "risk":
        extra = f"; most distinct: {most} {_n(per[most])}" if most is not None else ""
        text = f"embeddings separate acquisition sites with AUROC {_n(auroc)}{where}{extra}: a generalisation risk"
    elif band == "strength":
        text = f"embeddings barely separate acquisition sites (AUROC {_n(auroc)}{where}): little site signal"
    else:
        text = f"embeddings partly separate acquisition sites (AUROC {_n(auroc)}{where})"
    return [_f(rep.model, band, text)]


def _rank_finding(rep: Representation, dim: int | None) -> list[Finding]:
    """Effective rank relative to the embedding dimension."""
    rank = effective_rank(rep)
    if rank is None or dim is None:
        return []
    share = rank / dim
    text = f"effective rank {rank:.1f} of {dim} dimensions ({share * 100:.1f}%) on {rep.dataset}"
    if share < COLLAPSE_SHARE:
        return [_f(rep.model, "risk", text + ": the embedding uses few directions (dimensional-collapse risk)")]
    return [_f(rep.model, "note", text)]


def _concentration_finding(rep: Representation, dim: int | None) -> list[Finding]:
    """How many dimensions carry 90% of the probe's SHAP mass."""
    shap = rep.shap or {}
    n90 = shap.get("dims_for_90pct")
    if not is_num(n90):
        return []
    of = f" of {dim}" if dim else ""
    half = f" (50% in {int(shap['dims_for_50pct'])})" if is_num(shap.get("dims_for_50pct")) else ""
    gini = f", Gini {_n(shap['gini'])}" if is_num(shap.get("gini")) else ""
    return [_f(rep.model, "note", f"90% of the probe's reliance sits in {int(n90)}{of} dimensions{half} on "
               f"{rep.dataset}/{shap.get('task')}{gini}")]


def _stability_findings(rep: Representation) -> list[Finding]:
    """Do the top-k SHAP dims stay the same across seeds, training fractions and sources?"""
    shap = rep.shap or {}
    out = []
    for key, across in (("stability_seeds", "across seeds"), ("stability_fractions", "across training fractions"),
                        ("cross_source_agreement", "across acquisition sources")):
        s = shap.get(key)
        if not isinstance(s, dict) or not is_num(s.get("mean_jaccard")):
            continue
        j = s["mean_jaccard"]
        k = f"top-{int(s['k'])}" if is_num(s.get("k")) else "top"
        chance = f" vs chance {_n(s['chance'])}" if is_num(s.get("chance")) else ""
        where = f"{rep.dataset}/{shap.get('task')}"
        band = stability_band(j)
        verb = {"risk": "change", "strength": "are stable", "note": "partly change"}[band]
        tail = {"stability_fractions": ": what the probe relies on shifts when labels are scarce",
                "cross_source_agreement": ": the probe relies on different features at different sites"}
        text = f"{k} SHAP dimensions {verb} {across} on {where} (Jaccard {_n(j)}{chance})"
        out.append(_f(rep.model, band, text + (tail.get(key, "") if band == "risk" else "")))
    return out


def _clinical_findings(rep: Representation) -> list[Finding]:
    """Do the leads the probe relies on match textbook expectations?"""
    per_class = (rep.shap or {}).get("lead_importance_per_class")
    if not isinstance(per_class, Mapping):
        return []
    verdicts = [v for v in lead_verdicts({c: imp for c, imp in per_class.items() if isinstance(imp, Mapping)})
                if v.judged]
    bad = [v for v in verdicts if v.status == DISAGREES]
    good = [v for v in verdicts if v.status in (AGREES, PARTLY)]
    partly = sum(1 for v in good if v.status == PARTLY)
    out = []
    if bad:
        names = "; ".join(f"{v.class_name} (top leads {', '.join(v.top_leads)})" for v in bad)
        out.append(_f(rep.model, "risk", f"lead attributions do not match textbook expectations for {len(bad)} of "
                      f"{len(verdicts)} classes on {rep.dataset}: {names}"))
    elif good:
        part = f" ({partly} only partly)" if partly else ""
        out.append(_f(rep.model, "strength", f"lead attributions agree with textbook expectations for "
                      f"{len(good)} of {len(verdicts)} classes{part} on {rep.dataset}"))
    return out


def _representation_findings(results: Results) -> list[Finding]:
    """Site, rank, concentration, stability and clinical findings per representation row."""
    dims = embedding_dims(results)
    out = []
    for rep in sorted(results.representations or [], key=lambda r: (str(r.model), str(r.dataset))):
        if not rep.model:
            continue
        dim = dims.get(rep.model)
        out += (_site_finding(rep) + _rank_finding(rep, dim) + _concentration_finding(rep, dim)
                + _stability_findings(rep) + _clinical_findings(rep))
    return out


def findings(results: Results | Mapping) -> list[Finding]:
    """Per-model plain-language findings with their numbers, ordered by model, then kind, then rule."""
    results = Results.coerce(results)
    rules = (_leaderboard_findings, _comparison_findings, _efficiency_findings, _transfer_findings,
             _representation_findings)
    with cached():
        found = [f for rule in rules for f in rule(results)]
    rank = {m: i for i, m in enumerate(model_order(results))}
    # sorted() is stable, so rule order survives within a (model, kind).
    return sorted(found, key=lambda f: (rank.get(f.model, len(rank)), f.model, KINDS.index(f.kind)))
