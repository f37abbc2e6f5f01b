"""The transfer section: train-source x test-source heatmaps and the in- vs out-of-domain gap."""
from __future__ import annotations

from orchestrator.findings import gap_band
from orchestrator.report.figures import transfer_figure
from orchestrator.report.format import DASH, fmt, fmt_count
from orchestrator.report.markup import Raw, badge, details_html, figures_html, html_table, para
from orchestrator.results import Results
from orchestrator.results.queries import is_num, model_order


def transfer_section(results: Results, figures: list[dict]) -> str:
    """Cross-source transfer heatmaps and the in-domain vs out-of-domain gap; '' without transfer data."""
    transfer, gaps = results.transfer or [], results.transfer_gap or []
    given = [f for f in figures if f.get("kind") == "transfer"]
    # Figures passed in take precedence, so the report never shows the same matrix twice.
    figs = given or [{"name": n, "png": png, "caption": c} for n, png, c in transfer_figure(results)]
    if not (transfer or gaps or figs):
        return ""
    parts = ['<section id="transfer"><h2>Transfer across sources</h2>',
             para("Can a probe trained on ECGs from one acquisition source (hospital, device, database) recognise the "
                "same classes at another? Each matrix trains on the row's source and tests on the column's. The gap "
                "is the mean in-domain AUROC (same source) minus the mean out-of-domain AUROC (other sources): a large "
                "gap means the embedding carries site-specific signal the probe leans on."),
             figures_html(figs, grid=True)]
    if gaps:
        order = {m: i for i, m in enumerate(model_order(results))}
        rows = []
        for g in sorted(gaps, key=lambda g: (str(g.task), order.get(g.model, len(order)),
                                             str(g.model))):
            gap = g.gap
            band = gap_band(gap) if is_num(gap) else None
            reading = Raw(badge({"risk": "generalisation risk", "strength": "carries over", "note": "some loss"}[band],
                               {"risk": "risk", "strength": "good", "note": "warn"}[band])) if band else Raw(DASH)
            rows.append([g.model, g.task, fmt(g.in_domain), fmt(g.out_of_domain),
                         fmt(gap), reading])
        parts.append("<h3>Transfer gap</h3>")
        parts.append(html_table(["model", "task", "in-domain AUROC", "out-of-domain AUROC", "gap", "reading"], rows,
                            numeric=(2, 3, 4)))
    if transfer:
        rows = [[t.model, t.task, t.train_source, t.test_source, fmt_count(t.n_train),
                 fmt_count(t.n_test), fmt(t.auroc_macro),
                 ", ".join(map(str, t.classes or [])) or None]
                for t in sorted(transfer, key=lambda t: tuple(str(getattr(t, k)) for k in
                                                              ("model", "task", "train_source", "test_source")))]
        parts.append(details_html(f"All {len(rows)} transfer pairs", html_table(
            ["model", "task", "trained on", "tested on", "n_train", "n_test", "AUROC", "classes"], rows,
            numeric=(4, 5, 6))))
    return "".join(parts) + "</section>"
