"""The provenance section: preprocessing pipelines, hashes and the full experiment configuration."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.report.blocks import Table, pretty_json
from orchestrator.report.format import DASH
from orchestrator.report.templating import render
from orchestrator.results import Results


@dataclass(frozen=True)
class Pipeline:
    """The pipeline column of a preprocessing row: its steps in one line, and the whole pipeline as JSON."""

    steps: str | None
    json: str


def provenance_section(results: Results) -> str:
    """Preprocessing pipeline and hash per model and dataset, then the full experiment config."""
    rows = []
    for p in (results.preprocessing or []):
        pipe = p.pipeline or {}
        steps = pipe.get("steps")
        rows.append([p.model, p.dataset, p.hash,
                     Pipeline("; ".join(map(str, steps)) if isinstance(steps, list) else None, pretty_json(pipe))])
    return render("provenance.html.j2",
                  pipelines=Table(["model", "dataset", "hash", "pipeline"], rows) if rows else None,
                  config=pretty_json(results.experiment or {}),
                  ecglens_version=results.ecglens_version or DASH, schema_version=results.schema_version or DASH)
