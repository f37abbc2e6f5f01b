"""The representations section: UMAP, geometry, SHAP concentration and stability per model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.findings import COLLAPSE_SHARE, site_band, stability_band
from orchestrator.report.attribution import Attribution, attribution
from orchestrator.report.blocks import InlineFigure, Labelled, Reading, Table, Tag, inline_figures
from orchestrator.report.format import DASH, fmt, fmt_count, fraction_label
from orchestrator.report.templating import render
from orchestrator.results import Representation, Results
from orchestrator.results.queries import (effective_rank, embedding_dims, is_num, model_order, probe_label,
                                          site_separability)


def _silhouette_reading(score: Any, source: bool) -> Reading:
    """A score with a rule-of-thumb reading (Kaufman & Rousseeuw bands), flagged when it signals risk."""
    if not is_num(score):
        return Reading(DASH, Tag("undefined (fewer than two groups)"))
    level = "strong" if score > 0.7 else "moderate" if score > 0.5 else "weak" if score > 0.25 else "no clear"
    if source:  # sites should mix: separation is the warning sign
        cls = "risk" if score > 0.5 else "" if score > 0.25 else "good"
        text = f"{level} site separation" + (" — generalisation risk" if score > 0.5 else "")
    else:  # classes should separate
        cls = "good" if score > 0.5 else ""
        text = f"{level} class structure"
    return Reading(fmt(score), Tag(text, cls))


_SITE = {"risk": Tag("generalisation risk", "risk"), "strength": Tag("little site signal", "good"),
         "note": Tag("some site signal", "warn")}
_STABILITY = {"risk": Tag("fragile", "risk"), "strength": Tag("stable", "good"), "note": Tag("partly stable", "warn")}


def _site_reading(value: float | None, per_source: str | None) -> Reading:
    """Site-separability AUROC with its reading (thresholds in orchestrator/findings.py) and per-source scores."""
    if value is None:
        return Reading(DASH, Tag("undefined (one source)"), per_source)
    return Reading(fmt(value), _SITE[site_band(value)], per_source)


def _rank_reading(rank: float | None, dim: int | None) -> Reading | str | None:
    """'38.2 / 256 (15%)', flagged when below the collapse threshold."""
    if rank is None:
        return None
    if dim is None:
        return f"{rank:.1f}"
    share = rank / dim
    return Reading(f"{rank:.1f} / {dim:,} ({share * 100:.1f}%)",
                   Tag("collapse risk", "risk") if share < COLLAPSE_SHARE else None)


def _top_dims(top: dict) -> Labelled:
    """'class: 12, 5, 33' lines; entries may be dims or (dim, importance) pairs."""
    lines = []
    for cls, dims in (top or {}).items():
        ids = [d[0] if isinstance(d, (list, tuple)) else d for d in dims]
        lines.append((cls, ", ".join(str(int(i)) for i in ids) or None))
    return Labelled(tuple(lines))


def _sampled(used: Any, total: Any, what: str) -> str | None:
    """'what on 2,000 of 100,000 ECGs' when a 1.4 subsample count is below the total; None otherwise."""
    if not is_num(used) or not is_num(total) or used >= total:
        return None
    return f"{what} on {int(used):,} of {int(total):,} ECGs"


def _umap_sampling(u: dict, n: Any) -> str:
    """'; fitted on 20,000 of 100,000 ECGs (...)' for the subsamples a 1.4 UMAP entry records; '' when exact."""
    sub = u.get("subsample") or {}
    fitted = _sampled(sub.get("fit"), n, "fitted")
    notes = [fitted and fitted + " (the rest placed by transform)", _sampled(sub.get("grid"), n, "grid searched"),
             _sampled(sub.get("silhouette"), n, "silhouettes"), _sampled(sub.get("trustworthiness"), n,
                                                                         "trustworthiness")]
    notes = [t for t in notes if t]
    return "; " + "; ".join(notes) if notes else ""


def _umap_table(reps: list[Representation]) -> Table | None:
    """Class/source silhouettes, trustworthiness and continuity of the UMAP rows; None when none."""
    rows = []
    for r in reps:
        u = r.umap or {}
        if not u.get("n_neighbors") and "silhouette_class" not in u:
            continue  # a 'umap' that only holds continuity from the structure step is not a UMAP row
        rows.append([r.dataset, fmt_count(r.n_records), ", ".join(r.sources or []) or None,
                     _silhouette_reading(u.get("silhouette_class"), source=False),
                     _silhouette_reading(u.get("silhouette_source"), source=True), fmt(u.get("trustworthiness")),
                     fmt(u.get("continuity")),
                     f"n_neighbors={u.get('n_neighbors', DASH)}, min_dist={u.get('min_dist', DASH)}, "
                     f"{u.get('metric', DASH)}, seed={u.get('seed', DASH)}" + _umap_sampling(u, r.n_records)])
    return Table(["dataset", "ECGs", "sources", "class silhouette", "source silhouette", "trustworthiness",
                  "continuity", "UMAP settings"], rows, numeric=(1, 5, 6)) if rows else None


def _selection_rows(dataset: str, space: str, block: dict, n: Any = None) -> list:
    """One row of the UMAP selection table for a grid block ({grid, selected}); [] without a grid."""
    grid = [g for g in block.get("grid") or [] if isinstance(g, dict)]
    chosen = block.get("selected") or {}
    if not grid:
        return []
    scores = [g.get("silhouette") for g in grid if is_num(g.get("silhouette"))]
    spread = f"{min(scores):.2f} to {max(scores):.2f}" if scores else DASH
    sampled = _sampled((block.get("subsample") or {}).get("grid"), n, "searched")
    return [[dataset, space, fmt_count(len(grid)) + (f" ({sampled})" if sampled else ""),
             f"n_neighbors={chosen.get('n_neighbors', DASH)}, min_dist={chosen.get('min_dist', DASH)}",
             fmt(chosen.get("silhouette")), spread]]


def _selection_table(reps: list[Representation]) -> Table | None:
    """Per dataset and space: the UMAP grid's size, the chosen setting and its silhouette; None without grids."""
    rows = []
    for r in reps:
        u = r.umap or {}
        rows += _selection_rows(r.dataset, "full embedding", u, r.n_records)
        top = u.get("shap_top_k") or {}
        rows += _selection_rows(r.dataset, f"top {top.get('k', DASH)} SHAP dimensions", top, r.n_records)
    return Table(["dataset", "space", "settings tried", "chosen", "class silhouette (2-D)", "range over the grid"],
                 rows, numeric=(2, 4)) if rows else None


def _probe_shap_table(reps: list[Representation], dim: int | None) -> Table | None:
    """Per seed-family probe: how its (TreeSHAP) attribution concentrates, or why it was not explained."""
    rows = []
    for r in reps:
        for kind, s in ((r.shap or {}).get("by_probe") or {}).items():
            if not isinstance(s, dict):
                continue
            if not s.get("explainer"):
                rows.append([r.dataset, probe_label(kind), DASH, DASH, DASH, DASH, s.get("note")])
                continue
            n90 = s.get("dims_for_90pct")
            rows.append([r.dataset, probe_label(kind), f"{s['explainer']} ({fmt_count(s.get('n_samples'))} ECGs)",
                         fmt_count(s.get("dims_for_50pct")),
                         fmt_count(n90) + (f" of {dim:,}" if dim and is_num(n90) else ""), fmt(s.get("gini"), 2),
                         _top_dims(s.get("top_dims"))])
    return Table(["dataset", "probe", "explainer", "dimensions for 50%", "dimensions for 90%", "Gini",
                  "top dimensions per class"], rows, numeric=(3, 4, 5)) if rows else None


def _structure_table(reps: list[Representation], dim: int | None) -> Table | None:
    """kNN agreement, site separability, effective rank and spread of the embedding; None when none."""
    rows = []
    for r in reps:
        st = r.structure or {}
        site, rank = site_separability(r), effective_rank(r)
        if not st and site is None and rank is None:
            continue
        per = {k: v for k, v in (st.get("site_per_source") or {}).items() if is_num(v)}
        per_text = ", ".join(f"{s} {v:.2f}" for s, v in sorted(per.items())) or None
        k = f", k={st['k']}" if st.get("k") is not None else ""
        queried = _sampled((st.get("subsample") or {}).get("knn_queries"), r.n_records, "queried")
        k += f"; {queried}" if queried else ""
        knn = (f"{fmt(st.get('knn_agreement'))} (chance {fmt(st.get('knn_chance'))}{k})"
               if is_num(st.get("knn_agreement")) else DASH)
        rows.append([r.dataset, knn, _site_reading(site, per_text), _rank_reading(rank, dim),
                     fmt(st.get("participation_ratio"), 1), fmt(st.get("alignment")), fmt(st.get("uniformity"))])
    return Table(["dataset", "kNN class agreement", "site separability (AUROC)", "effective rank / dim",
                  "participation ratio", "alignment", "uniformity"], rows, numeric=(1, 4, 5, 6)) if rows else None


def _shap_table(reps: list[Representation], dim: int | None) -> Table | None:
    """Concentration and top dimensions of the explained probe; None without SHAP rows."""
    rows = []
    for r in reps:
        s = r.shap or {}
        if not any(k in s for k in ("dims_for_90pct", "top_dims", "max_additivity_error")):
            continue
        err = s.get("max_additivity_error")
        of = f" of {dim:,}" if dim else ""
        n90 = s.get("dims_for_90pct")
        rows.append([r.dataset, s.get("task"), fraction_label(s.get("train_fraction"), None), s.get("seed"),
                     fmt_count(s.get("dims_for_50pct")), fmt_count(n90) + (of if is_num(n90) else ""),
                     fmt(s.get("gini"), 2),
                     _top_dims(s.get("top_dims")),
                     f"{err:.1e}" if is_num(err) else DASH])  # tiny by design: 3 decimals would read 0.000
    return Table(["dataset", "task", "training set", "seed", "dimensions for 50%", "dimensions for 90%", "Gini",
                  "top dimensions per class", "additivity error"], rows, numeric=(3, 4, 5, 6, 8)) if rows else None


def _stability_table(reps: list[Representation]) -> Table | None:
    """Overlap of the top-k SHAP dims across seeds, training fractions and sources; None when none computed."""
    rows = []
    for r in reps:
        s = r.shap or {}
        for key, what in (("stability_seeds", "across seeds"), ("stability_fractions", "across training fractions"),
                          ("cross_source_agreement", "across sources")):
            st = s.get(key)
            if not isinstance(st, dict) or not is_num(st.get("mean_jaccard")):
                continue
            per = ", ".join(f"{c} {v:.2f}" for c, v in (st.get("per_class") or {}).items() if is_num(v))
            rows.append([r.dataset, what, st.get("k"), fmt(st["mean_jaccard"], 2), fmt(st.get("chance"), 2),
                         per or None, _STABILITY[stability_band(st["mean_jaccard"])]])
    return Table(["dataset", "compared", "k", "mean Jaccard", "chance", "per class", "reading"], rows,
                 numeric=(2, 3, 4)) if rows else None


SECTION_FIGURE_KINDS = ("umap_grid", "cka", "transfer")  # shown in their own sections, not per model


@dataclass(frozen=True)
class ModelRepresentation:
    """One model's subsection: tables, its figures by kind and its lead attribution."""

    title: str
    umap: Table | None
    structure: Table | None
    umap_figures: list[InlineFigure]
    selection: Table | None
    selection_figures: list[InlineFigure]
    shap: Table | None
    probe_shap: Table | None
    stability: Table | None
    shap_figures: list[InlineFigure]
    attribution: Attribution | None
    other_figures: list[InlineFigure]


def representation_section(results: Results, figures: list[dict]) -> str:
    """Per model: UMAP and structure scores and maps, SHAP concentration and stability, lead attribution."""
    reps = (results.representations or [])
    figures = [f for f in figures if f.get("kind") not in SECTION_FIGURE_KINDS]
    known = model_order(results)
    models = known + sorted({f.get("model") or "" for f in figures} - set(known))
    dims = embedding_dims(results)
    shown = []
    for model in models:
        mine = sorted((r for r in reps if r.model == model), key=lambda r: str(r.dataset))
        figs = [f for f in figures if (f.get("model") or "") == model]
        if not mine and not figs:
            continue
        dim = dims.get(model)
        shown.append(ModelRepresentation(
            title=model or "other figures", umap=_umap_table(mine), structure=_structure_table(mine, dim),
            umap_figures=inline_figures(f for f in figs if f.get("kind") == "umap"),
            selection=_selection_table(mine),
            selection_figures=inline_figures(f for f in figs if f.get("kind") == "umap_selection"),
            shap=_shap_table(mine, dim), probe_shap=_probe_shap_table(mine, dim), stability=_stability_table(mine),
            shap_figures=inline_figures(f for f in figs if f.get("kind") == "shap"),
            attribution=attribution(mine, figs),
            other_figures=inline_figures(f for f in figs if f.get("kind") not in ("umap", "umap_selection", "shap",
                                                                                  "leads"))))
    return render("representation.html.j2", models=shown)
