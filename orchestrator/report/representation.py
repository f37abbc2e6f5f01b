"""The representations section: UMAP, geometry, SHAP concentration and stability per model."""
from __future__ import annotations

from typing import Any

from orchestrator.findings import COLLAPSE_SHARE, site_band, stability_band
from orchestrator.report.attribution import attribution_block
from orchestrator.report.format import DASH, fmt, fmt_count, fraction_label
from orchestrator.report.markup import Raw, badge, esc, figures_html, html_table, para
from orchestrator.results import Representation, Results
from orchestrator.results.queries import effective_rank, embedding_dims, is_num, model_order, site_separability


def _silhouette_tag(score: Any, source: bool) -> Raw:
    """A score with a rule-of-thumb reading (Kaufman & Rousseeuw bands), flagged when it signals risk."""
    if not is_num(score):
        return Raw(f'{DASH} <span class="tag">undefined (fewer than two groups)</span>')
    level = "strong" if score > 0.7 else "moderate" if score > 0.5 else "weak" if score > 0.25 else "no clear"
    if source:  # sites should mix: separation is the warning sign
        cls = "risk" if score > 0.5 else "" if score > 0.25 else "good"
        text = f"{level} site separation" + (" — generalisation risk" if score > 0.5 else "")
    else:  # classes should separate
        cls = "good" if score > 0.5 else ""
        text = f"{level} class structure"
    return Raw(f'{fmt(score)} <span class="tag {cls}">{esc(text)}</span>')


def _site_tag(value: float | None) -> Raw:
    """Site-separability AUROC with its reading (thresholds in orchestrator/findings.py)."""
    if value is None:
        return Raw(f"{DASH} {badge('undefined (one source)')}")
    band = site_band(value)
    text = {"risk": "generalisation risk", "strength": "little site signal", "note": "some site signal"}[band]
    return Raw(f"{fmt(value)} {badge(text, {'risk': 'risk', 'strength': 'good', 'note': 'warn'}[band])}")


def _rank_tag(rank: float | None, dim: int | None) -> Raw:
    """'38.2 / 256 (15%)', flagged when below the collapse threshold."""
    if rank is None:
        return Raw(DASH)
    if dim is None:
        return Raw(esc(f"{rank:.1f}"))
    share = rank / dim
    flag = f" {badge('collapse risk', 'risk')}" if share < COLLAPSE_SHARE else ""
    return Raw(esc(f"{rank:.1f} / {dim:,} ({share * 100:.1f}%)") + flag)


def _stability_tag(jaccard: float) -> str:
    """A badge reading a mean top-k Jaccard."""
    band = stability_band(jaccard)
    return badge({"risk": "fragile", "strength": "stable", "note": "partly stable"}[band],
                {"risk": "risk", "strength": "good", "note": "warn"}[band])


def _top_dims(top: dict) -> str:
    """'class: 12, 5, 33' lines; entries may be dims or (dim, importance) pairs."""
    lines = []
    for cls, dims in (top or {}).items():
        ids = [d[0] if isinstance(d, (list, tuple)) else d for d in dims]
        lines.append(f"<b>{esc(cls)}</b>: {esc(', '.join(str(int(i)) for i in ids) or None)}")
    return "<br>".join(lines) or DASH


def _umap_table(reps: list[Representation]) -> str:
    """Class/source silhouettes, trustworthiness and continuity of the UMAP rows; '' when none."""
    rows = []
    for r in reps:
        u = r.umap or {}
        if not u.get("n_neighbors") and "silhouette_class" not in u:
            continue  # a 'umap' that only holds continuity from the structure step is not a UMAP row
        rows.append([r.dataset, fmt_count(r.n_records), ", ".join(r.sources or []) or None,
                     _silhouette_tag(u.get("silhouette_class"), source=False),
                     _silhouette_tag(u.get("silhouette_source"), source=True), fmt(u.get("trustworthiness")),
                     fmt(u.get("continuity")),
                     f"n_neighbors={u.get('n_neighbors', DASH)}, min_dist={u.get('min_dist', DASH)}, "
                     f"{u.get('metric', DASH)}, seed={u.get('seed', DASH)}"])
    if not rows:
        return ""
    return "<h4>Embedding structure</h4>" + html_table(
        ["dataset", "ECGs", "sources", "class silhouette", "source silhouette", "trustworthiness", "continuity",
         "UMAP settings"], rows, numeric=(1, 5, 6))


def _structure_table(reps: list[Representation], dim: int | None) -> str:
    """kNN agreement, site separability, effective rank and spread of the embedding; '' when none."""
    rows = []
    for r in reps:
        st = r.structure or {}
        site, rank = site_separability(r), effective_rank(r)
        if not st and site is None and rank is None:
            continue
        per = {k: v for k, v in (st.get("site_per_source") or {}).items() if is_num(v)}
        per_text = ("<br>" + esc(", ".join(f"{s} {v:.2f}" for s, v in sorted(per.items())))) if per else ""
        k = f", k={st['k']}" if st.get("k") is not None else ""
        knn = (f"{fmt(st.get('knn_agreement'))} (chance {fmt(st.get('knn_chance'))}{k})"
               if is_num(st.get("knn_agreement")) else DASH)
        rows.append([r.dataset, knn, Raw(_site_tag(site) + per_text), _rank_tag(rank, dim),
                     fmt(st.get("participation_ratio"), 1), fmt(st.get("alignment")), fmt(st.get("uniformity"))])
    if not rows:
        return ""
    return ("<h4>Geometry and site effects</h4>"
            + para("kNN agreement: share of nearest neighbours with the same class (compare with chance). Site "
                 "separability: cross-validated AUROC of telling the acquisition source from the embedding, overall "
                 "and per source (0.5 = sites look alike). Effective rank: directions carrying variance, out of the "
                 "embedding size.", "note")
            + html_table(["dataset", "kNN class agreement", "site separability (AUROC)", "effective rank / dim",
                      "participation ratio", "alignment", "uniformity"], rows, numeric=(1, 4, 5, 6)))


def _shap_table(reps: list[Representation], dim: int | None) -> str:
    """Concentration and top dimensions of the explained probe; '' without SHAP rows."""
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
                     Raw(_top_dims(s.get("top_dims"))),
                     f"{err:.1e}" if is_num(err) else DASH])  # tiny by design: 3 decimals would read 0.000
    if not rows:
        return ""
    return ("<h4>What the probe relies on (SHAP)</h4>"
            + para("Dimensions for 50% / 90%: how many embedding dimensions carry that share of the probe's "
                 "attribution; few = the information sits in a small part of the embedding. Gini: 0 = reliance "
                 "spread evenly, 1 = all on one dimension. Additivity error checks that the attributions add up to "
                 "the probe's output (should be ~0).")
            + html_table(["dataset", "task", "training set", "seed", "dimensions for 50%", "dimensions for 90%", "Gini",
                      "top dimensions per class", "additivity error"], rows, numeric=(3, 4, 5, 6, 8)))


def _stability_table(reps: list[Representation]) -> str:
    """Overlap of the top-k SHAP dims across seeds, training fractions and sources; '' when none computed."""
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
                         per or None, Raw(_stability_tag(st["mean_jaccard"]))])
    if not rows:
        return ""
    return ("<h4>Are the top dimensions stable?</h4>"
            + para("Mean Jaccard overlap of each class's top-k SHAP dimensions between runs (0 = none shared, 1 = "
                 "identical), against the overlap random dimensions would give (chance). Unstable top dimensions "
                 "mean explanations should not be read dimension by dimension.", "note")
            + html_table(["dataset", "compared", "k", "mean Jaccard", "chance", "per class", "reading"], rows,
                     numeric=(2, 3, 4)))


SECTION_FIGURE_KINDS = ("umap_grid", "cka", "transfer")  # shown in their own sections, not per model


def representation_section(results: Results, figures: list[dict]) -> str:
    """Per model: UMAP and structure scores and maps, SHAP concentration and stability, lead attribution."""
    parts = ['<section id="representations"><h2>Representations</h2>',
             para("UMAP maps show the embedding space in 2-D, coloured by diagnostic class and by acquisition "
                "source. Silhouettes and the geometry scores are computed in the full embedding space, not on the "
                "map. Ideally classes separate (high class silhouette, kNN agreement well above chance) while sources "
                "mix (low source silhouette, site separability near 0.5): an embedding that separates hospitals or "
                "devices may be learning site artefacts that will not transfer.")]
    reps = (results.representations or [])
    figures = [f for f in figures if f.get("kind") not in SECTION_FIGURE_KINDS]
    known = model_order(results)
    models = known + sorted({f.get("model") or "" for f in figures} - set(known))
    dims = embedding_dims(results)
    for model in models:
        mine = sorted((r for r in reps if r.model == model), key=lambda r: str(r.dataset))
        figs = [f for f in figures if (f.get("model") or "") == model]
        if not mine and not figs:
            continue
        dim = dims.get(model)
        parts.append(f"<h3>{esc(model or 'other figures')}</h3>")
        parts += [_umap_table(mine), _structure_table(mine, dim)]
        parts.append(figures_html([f for f in figs if f.get("kind") == "umap"], grid=True))
        parts += [_shap_table(mine, dim), _stability_table(mine)]
        parts.append(figures_html([f for f in figs if f.get("kind") == "shap"]))
        parts.append(attribution_block(mine, figs))
        parts.append(figures_html([f for f in figs if f.get("kind") not in ("umap", "shap", "leads")]))
    if len(parts) == 2:
        parts.append(para("No representation analysis was run."))
    return "".join(parts) + "</section>"
