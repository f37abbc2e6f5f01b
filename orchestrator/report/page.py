"""The page: every section's template output, in order, inside templates/page.html.j2; render_html and write_report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from markupsafe import Markup

from orchestrator.report.cells import all_probes
from orchestrator.report.errors import errors_section
from orchestrator.report.experiment import experiment_section, models_section
from orchestrator.report.glance import glance_section
from orchestrator.report.intro import intro_section
from orchestrator.report.leaderboard import leaderboard_section
from orchestrator.report.provenance import provenance_section
from orchestrator.report.representation import representation_section
from orchestrator.report.robustness import robustness_section
from orchestrator.report.scarcity import scarcity_section
from orchestrator.report.similarity import similarity_section, umap_grid_section
from orchestrator.report.subgroups import subgroups_section
from orchestrator.report.summary import summary_section
from orchestrator.report.templating import render, text
from orchestrator.report.transfer import transfer_section
from orchestrator.results import Results
from orchestrator.results.queries import cached, probe_label


def _sections(results: Results, figures: list[dict]) -> list[tuple[str, str, str]]:
    """Every section as (anchor, navigation title, html); empty html = the section is omitted."""
    return [
        ("glance", "At a glance", glance_section(results)),
        ("about", "What was measured", intro_section()),
        ("experiment", "Experiment", experiment_section(results)),
        ("models", "Models", models_section(results)),
        ("leaderboard", "Leaderboard", leaderboard_section(results)),
        ("summary", "Summary per model", summary_section(results)),
        ("scarcity", "Data scarcity", scarcity_section(results)),
        ("transfer", "Transfer", transfer_section(results, figures)),
        ("robustness", "Robustness", robustness_section(results)),
        ("subgroups", "Subgroups & calibration", subgroups_section(results)),
        ("representations", "Representations", representation_section(results, figures)),
        ("umap-grid", "UMAP grid", umap_grid_section(figures)),
        ("similarity", "Model similarity", similarity_section(results, figures)),
        ("errors", "Records not used", errors_section(results)),
        ("provenance", "Preprocessing & config", provenance_section(results)),
    ]


def render_html(results: Results | Mapping[str, Any], figures: list[dict]) -> str:
    """The whole report as one HTML string (results: Results, or a parsed results.json dict)."""
    results = Results.coerce(results)
    name = (results.experiment or {}).get("name") or "experiment"
    n_models, n_datasets = len(results.models or []), len(results.datasets or [])
    probes = all_probes(results) or ["linear"]
    with cached():  # every section reads the same CIs and comparisons: index them once
        # Each body is a section template's output (already escaped), so the page inserts it as Markup.
        sections = [(anchor, title, Markup(body)) for anchor, title, body in _sections(results, figures)]
    subtitle = (f"{n_models} model(s) on {n_datasets} dataset(s); frozen embeddings, "
                f"{', '.join(probe_label(p) for p in probes)} probes.")
    return render("page.html.j2", name=name, subtitle=subtitle, css=Markup(text("report.css")), sections=sections,
                  losses=results.losses())


def write_report(results: Results | Mapping[str, Any], figures: list[dict], out_dir: Path) -> Path:
    """Write out_dir/report.html (self-contained: figures inlined as data: URIs) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(render_html(results, figures), encoding="utf-8")
    return path
