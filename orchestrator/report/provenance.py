"""The provenance section: preprocessing pipelines, hashes and the full experiment configuration."""
from __future__ import annotations

from orchestrator.report.format import DASH
from orchestrator.report.markup import Raw, details_html, esc, html_table, json_block, para
from orchestrator.results import Results


def provenance_section(results: Results) -> str:
    """Preprocessing pipeline and hash per model and dataset, then the full experiment config."""
    rows = []
    for p in (results.preprocessing or []):
        pipe = p.pipeline or {}
        steps = pipe.get("steps")
        summary = "; ".join(map(str, steps)) if isinstance(steps, list) else None
        rows.append([p.model, p.dataset, Raw(f"<code>{esc(p.hash)}</code>"),
                     Raw(esc(summary) + details_html("pipeline", json_block(pipe)))])
    table = html_table(["model", "dataset", "hash", "pipeline"], rows) if rows else para("No preprocessing recorded.")
    meta = para(f"ECGLens {results.ecglens_version or DASH}, results schema "
              f"{results.schema_version or DASH}.", "note")
    return (f'<section id="provenance"><h2>Preprocessing and configuration</h2>'
            f"{para('The same pipeline hash means identical preprocessing; it is part of every cache key.')}"
            f"{table}{details_html('Full experiment configuration', json_block((results.experiment or {})))}"
            f"{meta}</section>")
