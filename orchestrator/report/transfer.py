"""The transfer section: train-source x test-source heatmaps and the in- vs out-of-domain gap."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.findings import gap_band
from orchestrator.report.blocks import InlineFigure, Table, Tag, inline_figures
from orchestrator.report.figures import transfer_figure
from orchestrator.report.format import fmt, fmt_count
from orchestrator.report.templating import render
from orchestrator.results import Results, TransferGap, TransferResult
from orchestrator.results.queries import is_num, model_order

_READINGS = {"risk": Tag("generalisation risk", "risk"), "strength": Tag("carries over", "good"),
             "note": Tag("some loss", "warn")}


@dataclass(frozen=True)
class Transfer:
    """What templates/transfer.html.j2 shows: heatmaps, the gap per model and task, every pair."""

    figures: list[InlineFigure]
    gaps: Table | None
    pairs: Table | None


def _gap_table(results: Results, gaps: list[TransferGap]) -> Table | None:
    """In-domain vs out-of-domain AUROC per model and task, with a reading of the gap; None without gaps."""
    if not gaps:
        return None
    order = {m: i for i, m in enumerate(model_order(results))}
    rows = []
    for g in sorted(gaps, key=lambda g: (str(g.task), order.get(g.model, len(order)), str(g.model))):
        band = gap_band(g.gap) if is_num(g.gap) else None
        rows.append([g.model, g.task, fmt(g.in_domain), fmt(g.out_of_domain), fmt(g.gap),
                     _READINGS[band] if band else None])
    return Table(["model", "task", "in-domain AUROC", "out-of-domain AUROC", "gap", "reading"], rows,
                 numeric=(2, 3, 4))


def _pairs_table(transfer: list[TransferResult]) -> Table | None:
    """Every (model, task, train source, test source) pair; None without transfer rows."""
    if not transfer:
        return None
    rows = [[t.model, t.task, t.train_source, t.test_source, fmt_count(t.n_train), fmt_count(t.n_test),
             fmt(t.auroc_macro), ", ".join(map(str, t.classes or [])) or None]
            for t in sorted(transfer, key=lambda t: tuple(str(getattr(t, k)) for k in
                                                          ("model", "task", "train_source", "test_source")))]
    return Table(["model", "task", "trained on", "tested on", "n_train", "n_test", "AUROC", "classes"], rows,
                 numeric=(4, 5, 6))


def transfer_section(results: Results, figures: list[dict]) -> str:
    """Cross-source transfer heatmaps and the in-domain vs out-of-domain gap; '' without transfer data."""
    transfer, gaps = results.transfer or [], results.transfer_gap or []
    given = [f for f in figures if f.get("kind") == "transfer"]
    # Figures passed in take precedence, so the report never shows the same matrix twice.
    figs = given or [{"name": n, "png": png, "caption": c} for n, png, c in transfer_figure(results)]
    if not (transfer or gaps or figs):
        return ""
    return render("transfer.html.j2", v=Transfer(inline_figures(figs), _gap_table(results, gaps),
                                                 _pairs_table(transfer)))
