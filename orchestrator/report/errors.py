"""The "Records not used" section: record problems and per-model counts."""
from __future__ import annotations

from orchestrator.report.blocks import Table
from orchestrator.report.format import fmt_count
from orchestrator.report.templating import render
from orchestrator.results import Results


MAX_OPEN_ERRORS = 50  # longer error lists are collapsed so the page stays readable


def errors_section(results: Results) -> str:
    """Records that were read but not used, with the reason, and per-model counts."""
    errors = (results.errors or [])
    # record "*" marks a whole step (a probe fit, a UMAP) that failed rather than one ECG.
    rows = [[e.dataset, "(whole step)" if e.record == "*" else e.record, e.stage, e.model or None, e.reason]
            for e in sorted(errors, key=lambda e: (str(e.dataset), str(e.record), str(e.stage)))]
    counts = [[c.dataset, c.model, fmt_count(c.records), fmt_count(c.embedded), fmt_count(c.skipped)]
              for c in (results.counts or [])]
    return render("errors.html.j2",
                  problems=Table(["dataset", "record", "stage", "model", "reason"], rows) if rows else None,
                  open=len(errors) <= MAX_OPEN_ERRORS,
                  counts=Table(["dataset", "model", "records read", "embedded", "skipped"], counts,
                               numeric=(2, 3, 4)) if counts else None)
