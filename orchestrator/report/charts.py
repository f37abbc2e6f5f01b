"""Figures of the summary, robustness and calibration sections (matplotlib, no pyplot), drawn from results.json."""
from __future__ import annotations

import math
from typing import Any, Sequence

from orchestrator.report.format import DASH, LINESTYLES
from orchestrator.results import CalibrationRow, Results, RobustnessRow
from orchestrator.results.queries import is_num, model_order, ordered_probes, probe_label
from services.common.figures import figure_png


def _mpl(text: Any) -> str:
    """Text for a matplotlib label: '$' escaped, so a name is never parsed as mathtext."""
    return str(text).replace("$", r"\$")


def _colours(models: Sequence[str]) -> dict[str, Any]:
    """The report's fixed colour per model (tab10, tab20 beyond ten), as figures.py assigns them."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % 20) for i, m in enumerate(models)}


def glance_heatmap(rows: list, columns: list) -> bytes | None:
    """Models x headline columns, each cell coloured by its column's 0 (worst) .. 1 (best) scale."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not rows or not columns:
        return None
    scores = np.array([[c.score(r.values.get(c.key)) if is_num(r.values.get(c.key)) else np.nan for c in columns]
                       for r in rows], dtype=float)
    fig = Figure(figsize=(1.25 * len(columns) + 2.2, 0.45 * len(rows) + 1.6))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(scores), cmap=colormaps["viridis"].with_extremes(bad="#eeeeee"), vmin=0, vmax=1,
              aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            value = r.values.get(c.key)
            light = not np.isnan(scores[i, j]) and scores[i, j] > 0.55
            ax.text(j, i, f"{value:.3f}" if is_num(value) else DASH, ha="center", va="center", fontsize=8,
                    color="black" if light or np.isnan(scores[i, j]) else "white")
    ax.set_xticks(range(len(columns)), [_mpl(c.title) for c in columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_mpl(r.model) for r in rows], fontsize=8)
    ax.set_title("at a glance (bright = better on each column's fixed scale)", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def _robust_panel(ax, rows: list[RobustnessRow], perturbation: str, colours: dict, legend: bool) -> None:
    """AUROC of the clean-trained probe vs grade (0 = clean) for one perturbation, a line per model."""
    for model, colour in colours.items():
        mine = sorted((r for r in rows if r.model == model and r.perturbation == perturbation
                       and is_num(r.auroc_macro)), key=lambda r: r.severity or 0)
        if not mine:
            continue
        xs = [0] + [r.severity for r in mine]
        ys = [mine[0].auroc_clean] + [r.auroc_macro for r in mine]
        ax.plot(xs, ys, marker="o", ms=3.5, lw=1.4, color=colour, label=_mpl(model))
    grades = sorted({r.severity for r in rows if r.perturbation == perturbation})
    levels = {r.severity: r.level for r in rows if r.perturbation == perturbation}
    ax.set_xticks([0] + grades, ["clean"] + [_mpl(levels[g]) for g in grades], fontsize=6.5, rotation=20)
    ax.axhline(0.5, color="#999999", ls="--", lw=0.8)
    ax.set_title(_mpl(perturbation.replace("_", " ")), fontsize=9)
    ax.set_ylim(0.35, 1.02)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=6.5, loc="lower left")


def robustness_figures(results: Results) -> list[tuple[str, bytes, str]]:
    """Per (dataset, task): small multiples of AUROC vs perturbation grade, as (name, png, caption)."""
    from matplotlib.figure import Figure

    rows = [r for r in results.robustness or [] if r.perturbation and r.perturbation != "identity"]
    out = []
    colours = _colours(model_order(results))
    for dataset, task in dict.fromkeys((r.dataset, r.task) for r in rows):
        cell = [r for r in rows if (r.dataset, r.task) == (dataset, task)]
        perturbations = list(dict.fromkeys(r.perturbation for r in cell))
        if not any(is_num(r.auroc_macro) for r in cell):
            continue
        ncols = min(3, len(perturbations))
        nrows = math.ceil(len(perturbations) / ncols)
        fig = Figure(figsize=(3.4 * ncols, 2.6 * nrows))
        for i, name in enumerate(perturbations):
            _robust_panel(fig.add_subplot(nrows, ncols, i + 1), cell, name, colours, legend=i == 0)
        fig.tight_layout()
        n = max(r.n or 0 for r in cell)
        caption = (f"{dataset}, {task}: macro AUROC of the linear probe trained on clean embeddings, tested on the "
                   f"embeddings of perturbed copies of the same {n} test ECGs, by severity (left: clean). A flat line "
                   "is a robust model; the dashed line is chance.")
        out.append((f"robustness/{dataset}/{task}", figure_png(fig), caption))
    return out


def reliability_figures(results: Results) -> list[tuple[str, bytes, str]]:
    """Per model (first dataset/task it has): a reliability diagram with a line per probe kind."""
    from matplotlib.figure import Figure

    rows: list[CalibrationRow] = [c for c in results.calibration or [] if c.bins]
    out = []
    for model in model_order(results):
        mine = [c for c in rows if c.model == model]
        if not mine:
            continue
        dataset, task = mine[0].dataset, mine[0].task
        mine = [c for c in mine if (c.dataset, c.task) == (dataset, task)]
        fig = Figure(figsize=(3.3, 3.1))
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#999999", ls="--", lw=0.8)
        for c in sorted(mine, key=lambda c: ordered_probes([p.probe for p in mine]).index(c.probe)):
            xs = [b["confidence"] for b in c.bins]
            ys = [b["frequency"] for b in c.bins]
            ece = f"{c.ece:.3f}" if is_num(c.ece) else DASH
            ax.plot(xs, ys, marker="o", ms=3, lw=1.3, ls=LINESTYLES.get(c.probe, "-."),
                    label=_mpl(f"{probe_label(c.probe)} (ECE {ece})"))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability (bin mean)", fontsize=7)
        ax.set_ylabel("observed frequency", fontsize=7)
        ax.set_title(_mpl(f"{model} \u2014 {task}"), fontsize=8)
        ax.legend(fontsize=6.5, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        caption = (f"{model}: reliability diagram on {dataset}/{task} (full training data, the seeds' test "
                   "predictions pooled). On the diagonal, a predicted 70% comes true 70% of the time.")
        out.append((f"reliability/{model}", figure_png(fig), caption))
    return out
