"""The "Records not used" section: record problems and per-model counts."""
from __future__ import annotations

from orchestrator.report.format import fmt_count
from orchestrator.report.markup import details_html, html_table, para
from orchestrator.results import Results


MAX_OPEN_ERRORS = 50  # longer error lists are collapsed so the page stays readable


def errors_section(results: Results) -> str:
    """Records that were read but not used, with the reason, and per-model counts."""
    errors = (results.errors or [])
    parts = ['<section id="errors"><h2>Records not used</h2>']
    if errors:
        # record "*" marks a whole step (a probe fit, a UMAP) that failed rather than one ECG.
        rows = [[e.dataset, "(whole step)" if e.record == "*" else e.record, e.stage,
                 e.model or None, e.reason]
                for e in sorted(errors, key=lambda e: (str(e.dataset), str(e.record), str(e.stage)))]
        table = html_table(["dataset", "record", "stage", "model", "reason"], rows)
        parts.append(details_html(f"{len(errors):,} record problem(s)", table, open_=len(errors) <= MAX_OPEN_ERRORS))
    else:
        parts.append(para("None: every record was read, embedded and used."))
    counts = [[c.dataset, c.model, fmt_count(c.records), fmt_count(c.embedded),
               fmt_count(c.skipped)] for c in (results.counts or [])]
    if counts:
        parts.append(html_table(["dataset", "model", "records read", "embedded", "skipped"], counts, numeric=(2, 3, 4)))
    return "".join(parts) + "</section>"
