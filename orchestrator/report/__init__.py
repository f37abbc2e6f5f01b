"""The report: results.json rendered as one self-contained HTML page, a scarcity figure and a terminal table.

Everything here reads `Results` only (docs/results-schema.md, schema 1.0 and 1.1); no model, server or
dataset is touched. One module per section gathers the typed data it shows (blocks.py: tables, cells, tags,
figures) and renders its Jinja2 template (templates/<section>.html.j2, shared macros in macros.html.j2) with
autoescaping on, so no value from results.json reaches the page unescaped. Every image is an inline data: URI,
and the page needs no network, fonts or JavaScript, so it can be mailed or archived as a single file. Sections backed by schema 1.1 keys (probe
kinds, CIs, comparisons, label efficiency, transfer, structure, attribution, similarity, findings) and by 1.3 keys
(robustness, subgroups, calibration) are left out when their data is absent. The page leads with the answer
(glance.py: one row per model, table and heatmap), then the glossary, then the details. The public API below is what orchestrator/report.py exposed.
"""
from orchestrator.report.figures import scarcity_figure, transfer_figure
from orchestrator.report.format import DASH, fmt, fmt_pm
from orchestrator.report.page import render_html, write_report
from orchestrator.report.table import results_table

__all__ = ["DASH", "fmt", "fmt_pm", "render_html", "results_table", "scarcity_figure", "transfer_figure",
           "write_report"]
