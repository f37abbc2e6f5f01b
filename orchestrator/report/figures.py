"""Figures the report draws itself (matplotlib, no pyplot): the scarcity curves and transfer heatmaps."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from orchestrator.findings import METRIC_NAMES
from orchestrator.report.cells import dataset_task_pairs, mean_of, metric_stats
from orchestrator.report.format import CHANCE, DASH, LINESTYLE_NAMES, LINESTYLES, fraction_label
from orchestrator.results import Results
from orchestrator.results.queries import (cached, interval, is_num, model_order, ordered_probes, primary_metric,
                                          probe_kind, probe_label)
from services.common.figures import figure_png


def _mpl(text: Any) -> str:
    """Text for a matplotlib label: '$' escaped, so a name is never parsed as mathtext (which can raise)."""
    return str(text).replace("$", r"\$")


MAX_KINDS_PER_PANEL = 3


def _model_colours(models: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per model (tab10, tab20 beyond ten models)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % 20) for i, m in enumerate(models)}


def _scarcity_panel(ax, results: Results, cell: list, colours: dict, probes: list[str], legend: bool,
                    per_kind: bool = False) -> None:
    """One (dataset, task) panel: primary metric vs training fraction, a line per model and probe kind."""
    from matplotlib.ticker import NullLocator

    metric = primary_metric(cell)
    fractions = sorted({r.train_fraction for r in cell})
    for model in colours:
        for probe in probes:
            points = sorted((r.train_fraction, mean_of(r, metric), metric_stats(r, metric).get("std"))
                            for r in cell if r.model == model and probe_kind(r) == probe
                            and mean_of(r, metric) is not None)
            if not points:
                continue
            xs, ys, sd = zip(*points)
            label = _mpl(model if len(probes) == 1 else f"{model} \u00b7 {probe_label(probe)}")
            ax.errorbar(xs, ys, yerr=[s if is_num(s) else 0.0 for s in sd], marker="o", ms=4, capsize=3, lw=1.6,
                        color=colours[model], ls=LINESTYLES.get(probe, (0, (3, 5))), label=label)
    chance = CHANCE.get(metric, 0.5)
    ax.axhline(chance, color="#999999", ls="--", lw=0.8)  # chance level, the floor a reader compares to
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(fractions, [fraction_label(f, None) for f in fractions])
    lows = [iv[0] for iv in (interval(results, r, metric) for r in cell) if iv is not None]
    # Keep chance visible and never clip a bad model.
    ax.set_ylim(min([chance - 0.1] + lows) - 0.02, 1.01)
    kind = f" \u00b7 {probe_label(probes[0])}" if per_kind else ""
    ax.set_title(_mpl(f"{cell[0].dataset} \u2014 {cell[0].task}{kind}"), fontsize=10)
    ax.set_xlabel("fraction of labelled training ECGs (log scale)", fontsize=8)
    ax.set_ylabel(METRIC_NAMES.get(metric, metric), fontsize=8)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower right")


def scarcity_figure(results: Results | Mapping[str, Any]) -> tuple[bytes, str]:
    """PNG of the primary metric (mean ± std over seeds) vs training fraction per (dataset, task); caption."""
    results = Results.coerce(results)
    from matplotlib.figure import Figure

    rows = [r for r in (results.summary or []) if r.train_fraction is not None]
    groups = [g for g in dataset_task_pairs(results) if any((r.dataset, r.task) == g for r in rows)]
    if not groups:
        fig = Figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no training-fraction results", ha="center", va="center")
        return figure_png(fig), "No probe was trained on a fraction of the training set, so there is no scarcity curve."
    probes = ordered_probes(probe_kind(r) for r in rows)
    colours = _model_colours(model_order(results))
    # Beyond MAX_KINDS_PER_PANEL kinds (the seed's families make seven) one panel per kind stays readable.
    per_kind = len(probes) > MAX_KINDS_PER_PANEL
    panels = [(g, [p]) for g in groups for p in probes] if per_kind else [(g, probes) for g in groups]
    ncols = min(4 if per_kind else 3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows))
    for i, ((dataset, task), kinds) in enumerate(panels):
        cell = [r for r in rows if (r.dataset, r.task) == (dataset, task) and (not per_kind or probe_kind(r) in kinds)]
        with cached():
            _scarcity_panel(fig.add_subplot(nrows, ncols, i + 1), results, cell, colours, kinds, legend=i == 0,
                            per_kind=per_kind)
    fig.tight_layout()
    seeds = sorted({r.n_seeds for r in rows if r.n_seeds is not None})
    if len(probes) == 1:
        who = f"the {probe_label(probes[0])} probe"
    elif per_kind:
        who = "each probe kind (one panel per kind: " + ", ".join(probe_label(p) for p in probes) + ")"
    else:
        who = "each probe (" + ", ".join(f"{LINESTYLE_NAMES.get(p, 'loose dashes')} = {probe_label(p)}"
                                         for p in probes) + ")"
    regression = any(primary_metric([r for r in rows if (r.dataset, r.task) == g]) != "auroc_macro"
                     for g in groups)
    metric = "Macro AUROC" + (" (R\u00b2 for regression tasks, chance 0)" if regression else "")
    caption = (f"{metric} of {who} on the test split versus the fraction of labelled training ECGs "
               f"it was trained on (log scale). Points are means over {'/'.join(map(str, seeds)) or 'the'} seeds, "
               f"bars \u00b1 one standard deviation; the dashed line is chance (0.5). A flatter curve means the "
               f"model needs fewer labels.")
    return figure_png(fig), caption


def _source_order(values: Iterable[str]) -> list[str]:
    """Distinct source names, sorted."""
    return sorted({str(v) for v in values})


def _transfer_heatmap(model: str, task: str, cell: list) -> bytes | None:
    """PNG of one model's train-source × test-source AUROC matrix for one task; None when nothing is scored."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    trains = _source_order(t.train_source for t in cell)
    tests = _source_order(t.test_source for t in cell)
    matrix = np.full((len(trains), len(tests)), np.nan)
    for t in cell:
        if is_num(t.auroc_macro):
            matrix[trains.index(str(t.train_source)), tests.index(str(t.test_source))] = t.auroc_macro
    if np.isnan(matrix).all():
        return None
    fig = Figure(figsize=(max(3.8, 1.0 * len(tests) + 2.4), max(3.0, 0.75 * len(trains) + 1.7)))
    ax = fig.add_subplot()
    # viridis is perceptually uniform and colour-blind safe; the fixed 0.5-1 range makes models comparable.
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=colormaps["viridis"].with_extremes(bad="#eeeeee"),
                      vmin=0.5, vmax=1.0, aspect="auto")
    for i, train in enumerate(trains):
        for j, test in enumerate(tests):
            value = matrix[i, j]
            dark = np.isnan(value) or (value - 0.5) / 0.5 > 0.55  # light cells get black text
            ax.text(j, i, DASH if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=9,
                    color="black" if dark else "white")
            if train == test:  # outline in-domain cells (inset, so neighbours do not look outlined too)
                ax.add_patch(Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False, ec="black", lw=2, ls="--"))
    ax.set_xticks(range(len(tests)), [_mpl(t) for t in tests], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(trains)), [_mpl(t) for t in trains], fontsize=8)
    ax.set_xlabel("tested on", fontsize=8)
    ax.set_ylabel("trained on", fontsize=8)
    ax.set_title(_mpl(f"{model} \u2014 {task}"), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).set_label("macro AUROC", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def transfer_figure(results: Results | Mapping[str, Any]) -> list[tuple[str, bytes, str]]:
    """Per model × task: a heatmap of macro AUROC, train (rows) × test source (columns), as (name, png, caption)."""
    results = Results.coerce(results)
    rows = [t for t in results.transfer or []
            if t.model and t.task and None not in (t.train_source, t.test_source)]
    out = []
    for model in model_order(results):
        for task in sorted({str(t.task) for t in rows if t.model == model}):
            cell = [t for t in rows if t.model == model and str(t.task) == task]
            png = _transfer_heatmap(model, task, cell)
            if png is None:
                continue
            caption = (f"{model}, {task}: macro AUROC of a probe trained on ECGs of the row's source and tested on "
                       "the column's source. Cells outlined with a dashed line are in domain (same source); the "
                       "others show how well the model carries over to a new site. Colour scale 0.5 (chance, or "
                       "below) to 1.0.")
            out.append((f"transfer/{model}/{task}", png, caption))
    return out
