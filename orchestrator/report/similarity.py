"""The UMAP grid and model-similarity (CKA) sections."""
from __future__ import annotations

from orchestrator.report.cells import ordered_names
from orchestrator.report.format import fmt
from orchestrator.report.markup import esc, figures_html, html_table, para
from orchestrator.results import Results
from orchestrator.results.queries import model_order


def umap_grid_section(figures: list[dict]) -> str:
    """Every model's UMAP side by side, one figure per colouring; '' without such figures."""
    figs = [f for f in figures if f.get("kind") == "umap_grid"]
    if not figs:
        return ""
    return ('<section id="umap-grid"><h2>All models side by side (UMAP)</h2>'
            + para("The same ECGs mapped by every model, coloured by diagnostic class, acquisition source, sex and age "
                 "band. Look for colourings that split the map: class should, source, sex and age ideally should "
                 "not (unless the task is about them).") + figures_html(figs) + "</section>")


def _cka_table(rows: list[dict], models: list[str]) -> str:
    """A model × model CKA matrix for one dataset."""
    value = {}
    for r in rows:
        value[(r.model_a, r.model_b)] = value[(r.model_b, r.model_a)] = r.cka
    names = [m for m in models if any(m in k for k in value)]
    table_rows = [[a] + [("1.000" if a == b else fmt(value.get((a, b)))) for b in names] for a in names]
    return html_table(["model"] + names, table_rows, numeric=range(1, len(names) + 1))


def similarity_section(results: Results, figures: list[dict]) -> str:
    """CKA between models' embeddings per dataset (figures and a matrix table); '' without data."""
    rows = [r for r in results.similarity or [] if r.model_a and r.model_b]
    figs = [f for f in figures if f.get("kind") == "cka"]
    if not rows and not figs:
        return ""
    models = model_order(results)
    models += sorted({str(getattr(r, k)) for r in rows for k in ("model_a", "model_b")} - set(models))
    parts = ['<section id="similarity"><h2>Model similarity</h2>',
             para("Linear CKA compares two models' embeddings of the same ECGs: 1 = the same geometry (up to rotation "
                "and scale), near 0 = unrelated. Models with high CKA have learned much the same thing, so they are "
                "unlikely to complement each other."), figures_html(figs, grid=True)]
    dataset_order = [d.name for d in (results.datasets or [])]
    for dataset in ordered_names({str(r.dataset) for r in rows}, dataset_order):
        parts.append(f"<h3>{esc(dataset)}</h3>")
        parts.append(_cka_table([r for r in rows if str(r.dataset) == dataset], models))
    return "".join(parts) + "</section>"
