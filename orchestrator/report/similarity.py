"""The UMAP grid and model-similarity (CKA) sections."""
from __future__ import annotations

from orchestrator.report.blocks import Table, inline_figures
from orchestrator.report.cells import ordered_names
from orchestrator.report.format import fmt
from orchestrator.report.templating import render
from orchestrator.results import Results, SimilarityRow
from orchestrator.results.queries import model_order


def umap_grid_section(figures: list[dict]) -> str:
    """Every model's UMAP side by side, one figure per colouring; '' without such figures."""
    figs = [f for f in figures if f.get("kind") == "umap_grid"]
    return render("umap_grid.html.j2", figures=inline_figures(figs)) if figs else ""


def _cka_table(rows: list[SimilarityRow], models: list[str]) -> Table:
    """A model × model CKA matrix for one dataset."""
    value = {}
    for r in rows:
        value[(r.model_a, r.model_b)] = value[(r.model_b, r.model_a)] = r.cka
    names = [m for m in models if any(m in k for k in value)]
    table_rows = [[a] + [("1.000" if a == b else fmt(value.get((a, b)))) for b in names] for a in names]
    return Table(["model"] + names, table_rows, numeric=range(1, len(names) + 1))


def similarity_section(results: Results, figures: list[dict]) -> str:
    """CKA between models' embeddings per dataset (figures and a matrix table); '' without data."""
    rows = [r for r in results.similarity or [] if r.model_a and r.model_b]
    figs = [f for f in figures if f.get("kind") == "cka"]
    if not rows and not figs:
        return ""
    models = model_order(results)
    models += sorted({str(getattr(r, k)) for r in rows for k in ("model_a", "model_b")} - set(models))
    dataset_order = [d.name for d in (results.datasets or [])]
    tables = [(dataset, _cka_table([r for r in rows if str(r.dataset) == dataset], models))
              for dataset in ordered_names({str(r.dataset) for r in rows}, dataset_order)]
    return render("similarity.html.j2", figures=inline_figures(figs), tables=tables)
