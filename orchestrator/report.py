"""The report: results.json rendered as one self-contained HTML page, a scarcity figure and a terminal table.

Everything here reads the results dict only (docs/results-schema.md, schema 1.0 and 1.1); no model,
server or dataset is touched. Every piece of text passes through html.escape, every image is an inline
data: URI, and the page needs no network, fonts or JavaScript, so it can be mailed or archived as a
single file. Sections backed by schema 1.1 keys (probe kinds, CIs, comparisons, label efficiency,
transfer, structure, attribution, similarity, findings) are left out when their data is absent.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from orchestrator import findings as fnd
from orchestrator.findings import (comparison, fkey, interval, is_num, leaderboard, leaderboard_cells,
                                   metric_ci, metric_mean, ordered_probes, primary_metric, probe_kind, probe_label)

DASH = "\u2014"  # how a missing or undefined number is shown
METRICS = ("auroc_macro", "auprc_macro", "f1_macro", "balanced_accuracy", "accuracy")
REGRESSION_METRICS = ("r2", "mae", "rmse", "pearson_r")
METRIC_LABELS = {"auroc_macro": "AUROC", "auprc_macro": "AUPRC", "f1_macro": "F1",
                 "balanced_accuracy": "Balanced acc.", "accuracy": "Accuracy", "r2": "R\u00b2", "mae": "MAE",
                 "rmse": "RMSE", "pearson_r": "Pearson r"}
SECONDARY = {"auroc_macro": ("auprc_macro", "balanced_accuracy"), "r2": ("mae", "rmse", "pearson_r"),
             "pearson_r": ("mae", "rmse")}
CHANCE = {"auroc_macro": 0.5, "r2": 0.0, "pearson_r": 0.0}
LINESTYLES = {"linear": "-", "knn": "--", "mlp": ":"}  # one line style per probe kind, colour per model
MAX_OPEN_ERRORS = 50  # longer error lists are collapsed so the page stays readable
ICONS = {"strength": "\u2713", "risk": "\u26a0", "note": "\u2022"}

INTRO = (
    "Each ECG foundation model turned every ECG into a fixed-length vector of numbers (an "
    "<em>embedding</em>) without being retrained; the models stay frozen. For each model, simple "
    "classifiers (<em>probes</em>) were then trained on those embeddings to recognise the diagnostic classes, "
    "and scored on ECGs from patients they never saw: a <em>linear</em> probe (logistic regression) and, where "
    "listed, a <em>kNN</em> probe (a vote of the most similar training ECGs) or a small neural network "
    "(<em>MLP</em>). A model whose embeddings let such a simple probe work well has captured clinically useful "
    "information. The main score is the <em>AUROC</em>: the probability that the probe ranks a random ECG with "
    "a condition above a random ECG without it (0.5 = chance, 1.0 = perfect), averaged over classes (macro). "
    "Where given, <em>95% confidence intervals</em> (in brackets) come from resampling the test patients "
    "(bootstrap): they show how much the score could move on another sample of patients. "
    "<em>Data scarcity</em> was simulated by training the probe on only a fraction of the labelled "
    "training ECGs (or on a fixed number per class), repeated with several random seeds; \u00b1 is the "
    "standard deviation over those seeds. <em>Transfer</em> trains on one acquisition source (hospital, "
    "device, database) and tests on another. <em>SHAP</em> shows which embedding dimensions (and, through "
    "the model, which ECG leads) the probe relies on, and <em>UMAP</em> draws a 2-D map of the embedding space "
    "in which nearby points are ECGs the model considers similar."
)
GLOSSARY = (
    ("AUROC", "ranking quality, 0.5 = chance, 1.0 = perfect; macro = mean over classes."),
    ("AUPRC", "area under the precision-recall curve; more sensitive to rare classes than AUROC."),
    ("F1", "harmonic mean of precision and recall of the probe's decisions, averaged over classes."),
    ("Balanced accuracy", "mean per-class recall (sensitivity), so large classes do not dominate."),
    ("95% CI", "patient-level bootstrap confidence interval: the range of plausible scores on other patients."),
    ("Paired bootstrap", "both models are scored on the same resampled patients; if the 95% CI of the "
                         "difference includes 0, the two are \u201cnot clearly different\u201d."),
    ("AULC", "area under the label-efficiency curve: the mean score over the training fractions (log scale); "
             "higher = good with few labels."),
    ("Silhouette (class)", "from \u22121 to 1: how well ECGs of the same class cluster together in the "
                           "embedding space; high = classes are well separated."),
    ("Silhouette (source)", "the same for acquisition source (hospital, device, database); high = the "
                            "embedding separates sites, a generalisation risk."),
    ("Trustworthiness", "from 0 to 1: how faithfully the 2-D UMAP map keeps true neighbours together; "
                        "near 1 = the picture can be trusted, below ~0.8 = read it with caution."),
    ("Continuity", "from 0 to 1: how many true neighbours the 2-D map keeps close (the converse of trustworthiness)."),
    ("kNN agreement", "share of an ECG's nearest neighbours in the embedding that have the same class; compare "
                      "with chance (what random neighbours would give)."),
    ("Site separability", "AUROC of telling the acquisition site from the embedding alone; 0.5 = sites look "
                          "alike (good), near 1 = sites are easy to tell apart (a generalisation risk)."),
    ("Effective rank", "how many directions of the embedding carry variance; far below the embedding size means "
                       "the embedding has collapsed onto a few directions."),
    ("Participation ratio", "another count of the directions that carry variance, dominated by the largest ones."),
    ("Alignment / uniformity", "mean distance between same-class ECGs (lower = tighter classes) and how evenly "
                               "embeddings spread over the sphere (more negative = more uniform)."),
    ("Jaccard", "overlap of two sets of top dimensions, 0 = none shared, 1 = identical; compared with chance."),
    ("Gini", "from 0 to 1: how unequally the probe's reliance is spread over dimensions; high = concentrated."),
    ("CKA", "centred kernel alignment, 0 to 1: how similar two models' embedding geometries are on the same ECGs."),
)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2430;
 max-width:1150px;margin:2rem auto;padding:0 1.2rem;line-height:1.5;background:#fff}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{border-bottom:2px solid #dfe4ea;padding-bottom:.2rem;margin-top:2.4rem}
h3{margin-top:1.6rem}h4{margin:1.2rem 0 .4rem}.sub{color:#5a6573;margin-top:0}
nav{background:#f5f7fa;padding:.6rem 1rem;border-radius:6px;font-size:.92rem}nav a{margin-right:1rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #dfe4ea;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f0f3f7}tr:nth-child(even) td{background:#fafbfc}td.num{text-align:right;white-space:nowrap}
tr.best td{background:#e6f4ea;font-weight:600}.note{color:#5a6573;font-size:.88rem}
.tag{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.8rem;background:#eef1f5}
.tag.risk{background:#fde8e8;color:#8a1c1c}.tag.good{background:#e6f4ea;color:#1e5b2c}
.tag.warn{background:#fff3dc;color:#7a4a00}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #dfe4ea}
figcaption{font-size:.88rem;color:#3d4652}dl.gloss dt{font-weight:600;float:left;clear:left;width:11rem}
dl.gloss dd{margin-left:11.5rem;margin-bottom:.3rem}pre{background:#f5f7fa;padding:.8rem;overflow:auto;font-size:.82rem}
details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}code{font-size:.88em}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:.2rem 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1rem}
.card{border:1px solid #dfe4ea;border-radius:8px;padding:.2rem 1rem .6rem}.card h3{margin:.6rem 0 .3rem}
ul.findings{list-style:none;padding-left:0;margin:.3rem 0}
ul.findings li{margin:.3rem 0 .3rem 1.5rem;text-indent:-1.5rem}
.icon{display:inline-block;width:1.5rem;text-indent:0;font-weight:700}
li.k-strength .icon{color:#1e7b34}li.k-risk .icon{color:#b3261e}li.k-note .icon{color:#5a6573}
ul.notes li{margin:.2rem 0}
"""


class Raw(str):
    """Text already rendered as HTML; the table builder inserts it unescaped."""


# --------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    """HTML-escaped text of any value; None becomes the dash."""
    return DASH if value is None else html.escape(str(value), quote=True)


_is_num = is_num
_key = fkey


def fmt(x: Any, digits: int = 3) -> str:
    """A number to `digits` decimals; None, NaN or non-numbers as the dash."""
    return f"{x:.{digits}f}" if _is_num(x) else DASH


def fmt_pm(stats: dict | None) -> str:
    """'mean ± std' of a summary metric; the dash when the mean is undefined."""
    stats = stats or {}
    mean, std = stats.get("mean"), stats.get("std")
    if not _is_num(mean):
        return DASH
    return f"{mean:.3f} \u00b1 {std:.3f}" if _is_num(std) else f"{mean:.3f}"


def fmt_ci(ci: tuple[float, float] | None) -> str:
    """'[0.970, 0.990]' or the dash."""
    return DASH if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fraction_label(fraction: float | None, k_shot: int | None) -> str:
    """'10%' for a training fraction, '5 per class' for k-shot, the dash for neither."""
    if fraction is not None:
        return f"{fraction * 100:g}%"
    return DASH if k_shot is None else f"{k_shot} per class"


def _count(n: Any) -> str:
    """An integer with thousands separators; the dash when missing."""
    return f"{int(n):,}" if _is_num(n) else DASH


def _metric(row: dict, name: str) -> dict:
    """One metric's summary stats of a summary row ({} when the metric was undefined)."""
    value = (row.get("metrics") or {}).get(name)
    return value if isinstance(value, dict) else {}


def _mean(row: dict, name: str = "auroc_macro") -> float | None:
    """The mean of one metric, or None."""
    return metric_mean(row, name)


def _cell_key(row: dict) -> tuple:
    """The (model, dataset, task, probe, fraction, k_shot) identity of a summary or probe row."""
    return (row["model"], row["dataset"], row["task"], probe_kind(row), _key(row.get("train_fraction")),
            row.get("k_shot"))


def _n_train(results: dict) -> dict[tuple, str]:
    """n_train per cell (see _cell_key): one value, or 'min–max' over seeds."""
    seen: dict[tuple, list[int]] = defaultdict(list)
    for p in (results.get("probes") or []):
        if _is_num(p.get("n_train")):
            seen[_cell_key(p)].append(p["n_train"])
    return {k: _count(min(v)) if min(v) == max(v) else f"{min(v):,}\u2013{max(v):,}" for k, v in seen.items()}


def _order(names: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Unique names, those in `preferred` first in its order, the rest sorted."""
    names = set(names)
    return [n for n in preferred if n in names] + sorted(names - set(preferred))


def _model_order(results: dict) -> list[str]:
    """Model names in the order of results['models'], then any that only appear in rows."""
    return fnd.model_order(results)


def _groups(results: dict) -> list[tuple[str, str]]:
    """(dataset, task) pairs with summary rows, datasets in results['datasets'] order."""
    dataset_order = [d["name"] for d in (results.get("datasets") or [])]
    pairs = {(r["dataset"], r["task"]) for r in (results.get("summary") or [])}
    datasets = _order({d for d, _ in pairs}, dataset_order)
    return [(d, t) for d in datasets for t in sorted({t for dd, t in pairs if dd == d})]


def _scarcity_sort(row: dict) -> tuple:
    """Fractions ascending first, then k-shot rows by k."""
    frac, k = row.get("train_fraction"), row.get("k_shot")
    return (0, frac, 0) if frac is not None else (1, 0.0, k if k is not None else -1)


def _probe_rank(kind: str) -> tuple[int, str]:
    """Sort key putting linear, kNN, MLP first."""
    return (fnd.PROBE_ORDER.index(kind) if kind in fnd.PROBE_ORDER else len(fnd.PROBE_ORDER), kind)


def _all_probes(results: dict) -> list[str]:
    """Probe kinds that appear in summary or probe rows, in canonical order."""
    return ordered_probes(probe_kind(r) for r in (results.get("summary") or []) + (results.get("probes") or []))


# --------------------------------------------------------------------------- terminal table


def results_table(results: dict) -> str:
    """Plain-text table, one row per (model, dataset, task, probe, training set): n_train and metric means."""
    n_train = _n_train(results)
    summary = (results.get("summary") or [])
    regression = any(_mean(r, "r2") is not None for r in summary)
    header = ["model", "dataset", "task", "probe", "train", "n_train", "seeds", "AUROC (mean \u00b1 sd)",
              "AUPRC", "F1", "bal. acc"] + (["R\u00b2 (mean \u00b1 sd)", "MAE"] if regression else [])
    rank = {m: i for i, m in enumerate(_model_order(results))}
    rows = sorted(summary, key=lambda r: (rank.get(r["model"], 0), r["model"], r["dataset"], r["task"],
                                          _probe_rank(probe_kind(r)), _scarcity_sort(r)))
    lines = [[r["model"], r["dataset"], r["task"], probe_label(probe_kind(r)),
              fraction_label(r.get("train_fraction"), r.get("k_shot")),
              n_train.get(_cell_key(r), DASH), str(r.get("n_seeds", DASH)),
              fmt_pm(_metric(r, "auroc_macro")), fmt(_mean(r, "auprc_macro")), fmt(_mean(r, "f1_macro")),
              fmt(_mean(r, "balanced_accuracy"))]
             + ([fmt_pm(_metric(r, "r2")), fmt(_mean(r, "mae"))] if regression else []) for r in rows]
    if not lines:
        return "no probe results"
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    numeric = set(range(5, len(header)))  # right-align numbers so decimals line up

    def render(cells: list[str]) -> str:
        """One padded line."""
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), "  ".join("-" * w for w in widths)] + [render(x) for x in lines])


# --------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    """PNG bytes of a matplotlib Figure, without pyplot (thread-safe) and without a Software stamp."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _mpl(text: Any) -> str:
    """Text for a matplotlib label: '$' escaped, so a name is never parsed as mathtext (which can raise)."""
    return str(text).replace("$", r"\$")


def _model_colours(models: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per model (tab10, tab20 beyond ten models)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % 20) for i, m in enumerate(models)}


def _scarcity_panel(ax, results: dict, cell: list[dict], colours: dict, probes: list[str], legend: bool) -> None:
    """One (dataset, task) panel: primary metric vs training fraction, a line per model and probe kind."""
    from matplotlib.ticker import NullLocator

    metric = primary_metric(cell)
    fractions = sorted({r["train_fraction"] for r in cell})
    for model in colours:
        for probe in probes:
            points = sorted((r["train_fraction"], _mean(r, metric), _metric(r, metric).get("std"))
                            for r in cell if r["model"] == model and probe_kind(r) == probe
                            and _mean(r, metric) is not None)
            if not points:
                continue
            xs, ys, sd = zip(*points)
            label = _mpl(model if len(probes) == 1 else f"{model} \u00b7 {probe_label(probe)}")
            ax.errorbar(xs, ys, yerr=[s if _is_num(s) else 0.0 for s in sd], marker="o", ms=4, capsize=3, lw=1.6,
                        color=colours[model], ls=LINESTYLES.get(probe, "-."), label=label)
    chance = CHANCE.get(metric, 0.5)
    ax.axhline(chance, color="#999999", ls="--", lw=0.8)  # chance level, the floor a reader compares to
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(fractions, [fraction_label(f, None) for f in fractions])
    lows = [iv[0] for iv in (interval(results, r, metric) for r in cell) if iv is not None]
    # Keep chance visible and never clip a bad model.
    ax.set_ylim(min([chance - 0.1] + lows) - 0.02, 1.01)
    ax.set_title(_mpl(f"{cell[0]['dataset']} \u2014 {cell[0]['task']}"), fontsize=10)
    ax.set_xlabel("fraction of labelled training ECGs (log scale)", fontsize=8)
    ax.set_ylabel(fnd.METRIC_NAMES.get(metric, metric), fontsize=8)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower right")


def scarcity_figure(results: dict) -> tuple[bytes, str]:
    """PNG of the primary metric (mean ± std over seeds) vs training fraction per (dataset, task); caption."""
    from matplotlib.figure import Figure

    rows = [r for r in (results.get("summary") or []) if r.get("train_fraction") is not None]
    groups = [g for g in _groups(results) if any((r["dataset"], r["task"]) == g for r in rows)]
    if not groups:
        fig = Figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no training-fraction results", ha="center", va="center")
        return _png(fig), "No probe was trained on a fraction of the training set, so there is no scarcity curve."
    probes = ordered_probes(probe_kind(r) for r in rows)
    colours = _model_colours(_model_order(results))
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows))
    for i, (dataset, task) in enumerate(groups):
        cell = [r for r in rows if (r["dataset"], r["task"]) == (dataset, task)]
        with fnd.cached():
            _scarcity_panel(fig.add_subplot(nrows, ncols, i + 1), results, cell, colours, probes, legend=i == 0)
    fig.tight_layout()
    seeds = sorted({r.get("n_seeds") for r in rows if r.get("n_seeds") is not None})
    if len(probes) == 1:
        who = f"the {probe_label(probes[0])} probe"
    else:
        styles = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}
        who = "each probe (" + ", ".join(f"{styles[LINESTYLES.get(p, '-.')]} = {probe_label(p)}" for p in probes) + ")"
    regression = any(primary_metric([r for r in rows if (r["dataset"], r["task"]) == g]) != "auroc_macro"
                     for g in groups)
    metric = "Macro AUROC" + (" (R\u00b2 for regression tasks, chance 0)" if regression else "")
    caption = (f"{metric} of {who} on the test split versus the fraction of labelled training ECGs "
               f"it was trained on (log scale). Points are means over {'/'.join(map(str, seeds)) or 'the'} seeds, "
               f"bars \u00b1 one standard deviation; the dashed line is chance (0.5). A flatter curve means the "
               f"model needs fewer labels.")
    return _png(fig), caption


def _source_order(values: Iterable[str]) -> list[str]:
    """Distinct source names, sorted."""
    return sorted({str(v) for v in values})


def _transfer_heatmap(model: str, task: str, cell: list[dict]) -> bytes | None:
    """PNG of one model's train-source × test-source AUROC matrix for one task; None when nothing is scored."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    trains = _source_order(t["train_source"] for t in cell)
    tests = _source_order(t["test_source"] for t in cell)
    matrix = np.full((len(trains), len(tests)), np.nan)
    for t in cell:
        if _is_num(t.get("auroc_macro")):
            matrix[trains.index(str(t["train_source"])), tests.index(str(t["test_source"]))] = t["auroc_macro"]
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
    return _png(fig)


def transfer_figure(results: dict) -> list[tuple[str, bytes, str]]:
    """Per model × task: a heatmap of macro AUROC, train (rows) × test source (columns), as (name, png, caption)."""
    rows = [t for t in results.get("transfer") or []
            if t.get("model") and t.get("task") and None not in (t.get("train_source"), t.get("test_source"))]
    out = []
    for model in _model_order(results):
        for task in sorted({str(t["task"]) for t in rows if t["model"] == model}):
            cell = [t for t in rows if t["model"] == model and str(t["task"]) == task]
            png = _transfer_heatmap(model, task, cell)
            if png is None:
                continue
            caption = (f"{model}, {task}: macro AUROC of a probe trained on ECGs of the row's source and tested on "
                       "the column's source. Cells outlined with a dashed line are in domain (same source); the "
                       "others show how well the model carries over to a new site. Colour scale 0.5 (chance, or "
                       "below) to 1.0.")
            out.append((f"transfer/{model}/{task}", png, caption))
    return out


# --------------------------------------------------------------------------- HTML building blocks


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None,
           numeric: Iterable[int] = ()) -> str:
    """An HTML table; cells are escaped unless they are Raw, numeric columns are right-aligned."""
    numeric = set(numeric)
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(('<td class="num">' if j in numeric else "<td>")
                        + (c if isinstance(c, Raw) else _esc(c)) + "</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(png: bytes, caption: str) -> str:
    """An <img> with the PNG inlined as a base64 data: URI, and its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _p(text: str, cls: str = "") -> str:
    """An escaped paragraph."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{_esc(text)}</p>"


def _details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (no JavaScript needed)."""
    return f"<details{' open' if open_ else ''}><summary>{_esc(summary)}</summary>{body}</details>"


def _json_block(value: Any) -> str:
    """Pretty JSON in an escaped <pre>."""
    return f"<pre>{_esc(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


def _silhouette_tag(score: Any, source: bool) -> Raw:
    """A score with a rule-of-thumb reading (Kaufman & Rousseeuw bands), flagged when it signals risk."""
    if not _is_num(score):
        return Raw(f'{DASH} <span class="tag">undefined (fewer than two groups)</span>')
    level = "strong" if score > 0.7 else "moderate" if score > 0.5 else "weak" if score > 0.25 else "no clear"
    if source:  # sites should mix: separation is the warning sign
        cls = "risk" if score > 0.5 else "" if score > 0.25 else "good"
        text = f"{level} site separation" + (" — generalisation risk" if score > 0.5 else "")
    else:  # classes should separate
        cls = "good" if score > 0.5 else ""
        text = f"{level} class structure"
    return Raw(f'{fmt(score)} <span class="tag {cls}">{_esc(text)}</span>')


def _tag(text: str, cls: str = "") -> str:
    """A small coloured badge (cls: risk, warn, good or '')."""
    return f'<span class="tag {cls}">{_esc(text)}</span>'


def _site_tag(value: float | None) -> Raw:
    """Site-separability AUROC with its reading (thresholds in orchestrator/findings.py)."""
    if value is None:
        return Raw(f"{DASH} {_tag('undefined (one source)')}")
    band = fnd.site_band(value)
    text = {"risk": "generalisation risk", "strength": "little site signal", "note": "some site signal"}[band]
    return Raw(f"{fmt(value)} {_tag(text, {'risk': 'risk', 'strength': 'good', 'note': 'warn'}[band])}")


def _rank_tag(rank: float | None, dim: int | None) -> Raw:
    """'38.2 / 256 (15%)', flagged when below the collapse threshold."""
    if rank is None:
        return Raw(DASH)
    if dim is None:
        return Raw(_esc(f"{rank:.1f}"))
    share = rank / dim
    flag = f" {_tag('collapse risk', 'risk')}" if share < fnd.COLLAPSE_SHARE else ""
    return Raw(_esc(f"{rank:.1f} / {dim:,} ({share * 100:.1f}%)") + flag)


def _stability_tag(jaccard: float) -> str:
    """A badge reading a mean top-k Jaccard."""
    band = fnd.stability_band(jaccard)
    return _tag({"risk": "fragile", "strength": "stable", "note": "partly stable"}[band],
                {"risk": "risk", "strength": "good", "note": "warn"}[band])


def _figures(figs: Sequence[dict], grid: bool = False) -> str:
    """Figures in the given order, side by side when grid is set."""
    html_figs = "".join(_figure(f["png"], f.get("caption") or f.get("name", "")) for f in figs)
    return f'<div class="figs">{html_figs}</div>' if grid and html_figs else html_figs


def _plain(value: Any) -> str:
    """A config value as short text: integers with separators, containers as compact JSON."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# --------------------------------------------------------------------------- sections


def _intro_section() -> str:
    """What was measured, in plain language, and a glossary of the scores."""
    gloss = "".join(f"<dt>{_esc(t)}</dt><dd>{_esc(d)}</dd>" for t, d in GLOSSARY)
    return (f'<section id="about"><h2>What was measured</h2><p>{INTRO}</p>'
            f'<dl class="gloss">{gloss}</dl></section>')


def _experiment_section(results: dict) -> str:
    """Datasets, split, training fractions, k-shots and seeds."""
    exp = results.get("experiment", {})
    split = exp.get("split", {})
    parts = ['<section id="experiment"><h2>The experiment</h2>']
    if exp.get("description"):
        parts.append(_p(exp["description"]))
    scarcity = exp.get("scarcity") or {}  # the experiment file nests these; accept them flat too
    fractions = ", ".join(fraction_label(f, None)
                          for f in exp.get("train_fractions", scarcity.get("train_fractions", [])))
    shots = ", ".join(fraction_label(None, k) for k in exp.get("k_shots", scarcity.get("k_shots", [])))
    seeds = exp.get("seeds", [])
    tf = split.get("test_fraction")
    parts.append(
        "<ul>"
        f"<li>Split: {_esc(fraction_label(tf, None) if tf is not None else None)} of "
        f"{_esc(split.get('level', 'patient'))}s held out for testing (split seed {_esc(split.get('seed'))}); "
        f"no {_esc(split.get('level', 'patient'))} appears in both training and test data.</li>"
        f"<li>Training set sizes: {_esc(fractions or None)} of the training split; k-shot: {_esc(shots or None)}.</li>"
        f"<li>Seeds: {_esc(len(seeds))} ({_esc(', '.join(map(str, seeds)) or None)}) \u2014 each seed draws a "
        f"different training subset, so \u00b1 reflects which ECGs happened to be labelled.</li></ul>")
    rows = []
    for d in (results.get("datasets") or []):
        sources = ", ".join(f"{s} ({n:,})" for s, n in sorted((d.get("sources") or {}).items()))
        classes = Raw("<br>".join(
            f"<b>{_esc(task)}</b>: " + _esc(", ".join(f"{c} ({n:,})" for c, n in counts.items()))
            for task, counts in (d.get("classes") or {}).items()) or DASH)
        sp = d.get("split") or {}
        rows.append([d["name"], d.get("kind"), _count(d.get("n_records")), _count(d.get("n_patients")),
                     sources or None, classes,
                     f"{_count(sp.get('n_train'))} ECGs / {_count(sp.get('train_patients'))} patients",
                     f"{_count(sp.get('n_test'))} ECGs / {_count(sp.get('test_patients'))} patients"])
    parts.append("<h3>Datasets</h3>")
    parts.append(_table(["dataset", "kind", "ECGs", "patients", "sources (ECGs)", "classes (ECGs)",
                         "train", "test"], rows, numeric=(2, 3)) if rows else _p("No dataset."))
    return "".join(parts) + "</section>"


def _input_spec(m: dict) -> str:
    """'500 Hz × 5,000 samples (10.0 s); 12 leads: I, II, …'."""
    rate, n = m.get("sampling_rate_hz"), m.get("num_samples")
    leads = m.get("leads") or []
    duration = f" ({n / rate:.1f} s)" if _is_num(rate) and _is_num(n) and rate else ""
    rate_text = f"{rate:g} Hz" if _is_num(rate) else DASH
    return f"{rate_text} \u00d7 {_count(n)} samples{duration}; {len(leads)} leads: {', '.join(leads) or DASH}"


def _models_section(results: dict) -> str:
    """One row per model: what it is and what input it expects."""
    rows = []
    for m in (results.get("models") or []):
        name = Raw(f"<b>{_esc(m['name'])}</b> <span class=\"note\">v{_esc(m.get('version'))}</span>"
                   + (f"<br><span class=\"note\">{_esc(m['description'])}</span>" if m.get("description") else ""))
        served = f"{m.get('backend', DASH)}, {m.get('endpoint', DASH)}, {m.get('replicas', DASH)} replica(s)"
        rows.append([name, m.get("kind"), m.get("objective"), _count(m.get("params")), _count(m.get("embedding_dim")),
                     _input_spec(m), m.get("normalization"), served])
    table = _table(["model", "kind", "objective", "parameters", "embedding dim", "input", "normalisation",
                    "served by"], rows, numeric=(3, 4)) if rows else _p("No model.")
    return f'<section id="models"><h2>Models</h2>{table}</section>'


def _board_note(results: dict, rank: int, row: dict, best: dict, metric: str, vs_best: dict | None) -> str:
    """The leaderboard note of one model: best, not clearly different from it, or clearly below it."""
    if rank == 0:
        return "best"
    if vs_best is not None:
        p = fnd.p_text(vs_best["p_value"])
        if not vs_best["clear"]:
            return f"not clearly different from the best (paired bootstrap {p})"
        return f"clearly below the best (paired bootstrap {p})" if vs_best["side"] == -1 else \
            f"clearly different from the best (paired bootstrap {p})"
    iv, best_iv = interval(results, row, metric), interval(results, best, metric)
    if best_iv is not None and iv is not None and iv[1] >= best_iv[0]:
        return "not clearly different from the best (intervals overlap)"
    return ""


def _board_table(results: dict, dataset: str, task: str, probe: str, n_train: dict) -> tuple[str, float | None]:
    """One ranked table for a (dataset, task, probe kind) at its largest training fraction, and that fraction."""
    top, metric, ranked = leaderboard(results, dataset, task, probe)
    label = METRIC_LABELS.get(metric, metric)
    cis = {r["model"]: metric_ci(results, r, metric) for r in ranked}
    has_ci = any(ci is not None for ci in cis.values())
    best = ranked[0]
    vs = {r["model"]: comparison(results, dataset, task, probe, top, r["model"], best["model"], metric)
          for r in ranked[1:]}
    has_cmp = any(c is not None for c in vs.values())
    secondary = SECONDARY.get(metric, ())
    rows, classes = [], []
    for i, r in enumerate(ranked):
        defined = _mean(r, metric) is not None
        note = _board_note(results, i, r, best, metric, vs.get(r["model"])) if defined else f"{label} undefined"
        c = vs.get(r["model"])
        rows.append([str(i + 1) if defined else DASH, r["model"], fmt_pm(_metric(r, metric))]
                    + ([fmt_ci(cis[r["model"]])] if has_ci else [])
                    + [fmt_pm(_metric(r, m)) for m in secondary]
                    + [n_train.get(_cell_key(r), DASH), r.get("n_seeds")]
                    + ([fnd.comparison_text(c, metric) if c is not None else DASH] if has_cmp else []) + [note])
        classes.append("best" if i == 0 and defined else "")
    headers = (["rank", "model", f"{label} (mean \u00b1 SD)"] + (["95% CI"] if has_ci else [])
               + [METRIC_LABELS.get(m, m) for m in secondary] + ["n_train", "seeds"]
               + (["vs best (paired, on the same patients)"] if has_cmp else []) + ["note"])
    numeric = [0] + list(range(2, len(headers) - 1 - int(has_cmp)))
    return _table(headers, rows, classes, numeric=numeric), top


def _leaderboard_section(results: dict) -> str:
    """Per (dataset, task) and probe kind: models ranked by the primary metric at the largest training fraction."""
    parts = ['<section id="leaderboard"><h2>Leaderboard</h2>',
             _p("Models ranked by macro AUROC (R\u00b2 for regression tasks) on the test split when the probe is "
                "trained on the largest training fraction (full data). The best model is highlighted. Brackets are "
                "95% confidence intervals over test patients where they were computed. Two models are marked "
                "\u201cnot clearly different\u201d when the 95% CI of their paired difference (both scored on the "
                "same resampled patients) includes 0, or, without paired comparisons, when their intervals (CI, "
                "else mean \u00b1 SD over seeds) overlap.")]
    n_train = _n_train(results)
    cells = leaderboard_cells(results)
    for dataset, task in dict.fromkeys((d, t) for d, t, _ in cells):
        probes = [p for d, t, p in cells if (d, t) == (dataset, task)]
        tables = [(p, *_board_table(results, dataset, task, p, n_train)) for p in probes]
        if len(tables) == 1:
            probe, table, top = tables[0]
            parts.append(f'<h3>{_esc(dataset)} \u2014 {_esc(task)} <span class="note">({_esc(probe_label(probe))} '
                         f"probe, trained on {_esc(fraction_label(top, None))} of the training split)</span></h3>")
            parts.append(table)
            continue
        parts.append(f"<h3>{_esc(dataset)} \u2014 {_esc(task)}</h3>")
        for probe, table, top in tables:
            parts.append(f'<h4>{_esc(probe_label(probe))} probe <span class="note">(trained on '
                         f"{_esc(fraction_label(top, None))} of the training split)</span></h4>{table}")
    if not cells:
        parts.append(_p("No training-fraction results to rank."))
    return "".join(parts) + "</section>"


def _findings(results: dict) -> list[dict]:
    """results["findings"] when it is a list (schema 1.1; [] = none), else derived from the numbers."""
    given = results.get("findings")
    rows = given if isinstance(given, list) else fnd.findings(results)
    return [f for f in rows if isinstance(f, dict) and f.get("text") and f.get("kind") in fnd.KINDS]


def _summary_section(results: dict) -> str:
    """One card per model with its strengths, risks and notes in plain words; '' when there are none."""
    rows = _findings(results)
    if not rows:
        return ""
    models = _model_order(results)
    models += [m for m in dict.fromkeys(str(f.get("model")) for f in rows) if m not in models]
    cards = []
    for model in models:
        mine = sorted((f for f in rows if str(f.get("model")) == model), key=lambda f: fnd.KINDS.index(f["kind"]))
        if not mine:
            continue
        items = "".join(f'<li class="k-{_esc(f["kind"])}"><span class="icon" title="{_esc(f["kind"])}">'
                        f"{ICONS[f['kind']]}</span>{_esc(f['text'])}</li>" for f in mine)
        tally = {k: sum(f["kind"] == k for f in mine) for k in fnd.KINDS}
        counts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in tally.items() if n)
        cards.append(f'<div class="card"><h3>{_esc(model)}</h3><p class="note">{_esc(counts)}</p>'
                     f'<ul class="findings">{items}</ul></div>')
    intro = _p("What the numbers below say about each model, in plain words: \u2713 strength, \u26a0 risk, "
               "\u2022 note. Each sentence quotes the number it rests on. Rules of thumb: site separability above "
               f"{fnd.SITE_RISK:g} is a risk and below {fnd.SITE_OK:g} a strength; an out-of-domain loss of "
               f"{fnd.GAP_RISK:g} AUROC or more is a risk; top-dimension overlap (Jaccard) below "
               f"{fnd.JACCARD_FRAGILE:g} is fragile and from {fnd.JACCARD_STABLE:g} stable; an effective rank below "
               f"{fnd.COLLAPSE_SHARE * 100:g}% of the embedding size signals collapse.")
    return f'<section id="summary"><h2>Summary per model</h2>{intro}<div class="cards">{"".join(cards)}</div></section>'


def _efficiency_table(results: dict) -> str:
    """AULC and labels needed for 95% of the full-data score; '' without label_efficiency rows."""
    rows = [r for r in results.get("label_efficiency") or [] if r.get("model")]
    if not rows:
        return ""
    rows = sorted(rows, key=lambda r: (str(r.get("dataset")), str(r.get("task")), _probe_rank(probe_kind(r)),
                                       -(r["aulc"] if _is_num(r.get("aulc")) else -math.inf), str(r["model"])))
    table_rows = []
    for r in rows:
        frac = r.get("fraction_to_95pct")
        if not _is_num(frac):
            reading = Raw(DASH)
        elif frac <= fnd.EFFICIENT_FRACTION:
            reading = Raw(_tag("label-efficient", "good"))
        elif frac >= fnd.HUNGRY_FRACTION:
            reading = Raw(_tag("label-hungry", "risk"))
        else:
            reading = ""
        table_rows.append([r.get("dataset"), r.get("task"), probe_label(probe_kind(r)), r["model"], fmt(r.get("aulc")),
                           fraction_label(frac, None) if _is_num(frac) else DASH, reading])
    return ("<h3>Label efficiency</h3>"
            + _p("AULC: the mean score over the training fractions on a log scale (higher = better with few labels; "
                 "compare only rows with the same fractions). Labels for 95%: the smallest training fraction at "
                 "which the probe reaches 95% of its full-data score.")
            + _table(["dataset", "task", "probe", "model", "AULC", "labels for 95% of full-data score", "reading"],
                     table_rows, numeric=(4, 5)))


def _scarcity_section(results: dict) -> str:
    """The scarcity curve, label efficiency, then one table per model: every training-set size × every metric."""
    png, caption = scarcity_figure(results)
    parts = ['<section id="scarcity"><h2>Data scarcity</h2>',
             _p("How each model's probe copes with fewer labelled ECGs. Values are mean \u00b1 SD over seeds "
                "on the same held-out test split."), _figure(png, caption), _efficiency_table(results)]
    n_train = _n_train(results)
    warnings: dict[tuple, set[str]] = defaultdict(set)
    for p in (results.get("probes") or []):
        warnings[_cell_key(p)].update(p.get("warnings") or [])
    summary = (results.get("summary") or [])
    metrics = [m for m in METRICS + REGRESSION_METRICS if any(m in (r.get("metrics") or {}) for r in summary)]
    for model in _model_order(results):
        rows = sorted((r for r in summary if r["model"] == model),
                      key=lambda r: (r["dataset"], r["task"], _probe_rank(probe_kind(r)), _scarcity_sort(r)))
        if not rows:
            continue
        cis = [metric_ci(results, r, primary_metric([r])) for r in rows]
        has_ci = any(ci is not None for ci in cis)
        table_rows = [[r["dataset"], r["task"], probe_label(probe_kind(r)),
                       fraction_label(r.get("train_fraction"), r.get("k_shot")), n_train.get(_cell_key(r), DASH),
                       r.get("n_seeds")] + [fmt_pm(_metric(r, m)) for m in metrics]
                      + ([fmt_ci(ci)] if has_ci else []) + ["; ".join(sorted(warnings[_cell_key(r)])) or ""]
                      for r, ci in zip(rows, cis)]
        parts.append(f"<h3>{_esc(model)}</h3>")
        parts.append(_table(["dataset", "task", "probe", "training set", "n_train", "seeds"]
                            + [METRIC_LABELS[m] for m in metrics] + (["95% CI (main metric)"] if has_ci else [])
                            + ["probe warnings"], table_rows, numeric=range(4, 6 + len(metrics) + int(has_ci))))
    return "".join(parts) + "</section>"


def _transfer_section(results: dict, figures: list[dict]) -> str:
    """Cross-source transfer heatmaps and the in-domain vs out-of-domain gap; '' without transfer data."""
    transfer, gaps = results.get("transfer") or [], results.get("transfer_gap") or []
    given = [f for f in figures if f.get("kind") == "transfer"]
    # Figures passed in take precedence, so the report never shows the same matrix twice.
    figs = given or [{"name": n, "png": png, "caption": c} for n, png, c in transfer_figure(results)]
    if not (transfer or gaps or figs):
        return ""
    parts = ['<section id="transfer"><h2>Transfer across sources</h2>',
             _p("Can a probe trained on ECGs from one acquisition source (hospital, device, database) recognise the "
                "same classes at another? Each matrix trains on the row's source and tests on the column's. The gap "
                "is the mean in-domain AUROC (same source) minus the mean out-of-domain AUROC (other sources): a large "
                "gap means the embedding carries site-specific signal the probe leans on."), _figures(figs, grid=True)]
    if gaps:
        order = {m: i for i, m in enumerate(_model_order(results))}
        rows = []
        for g in sorted(gaps, key=lambda g: (str(g.get("task")), order.get(g.get("model"), len(order)),
                                             str(g.get("model")))):
            gap = g.get("gap")
            band = fnd.gap_band(gap) if _is_num(gap) else None
            reading = Raw(_tag({"risk": "generalisation risk", "strength": "carries over", "note": "some loss"}[band],
                               {"risk": "risk", "strength": "good", "note": "warn"}[band])) if band else Raw(DASH)
            rows.append([g.get("model"), g.get("task"), fmt(g.get("in_domain")), fmt(g.get("out_of_domain")),
                         fmt(gap), reading])
        parts.append("<h3>Transfer gap</h3>")
        parts.append(_table(["model", "task", "in-domain AUROC", "out-of-domain AUROC", "gap", "reading"], rows,
                            numeric=(2, 3, 4)))
    if transfer:
        rows = [[t.get("model"), t.get("task"), t.get("train_source"), t.get("test_source"), _count(t.get("n_train")),
                 _count(t.get("n_test")), fmt(t.get("auroc_macro")),
                 ", ".join(map(str, t.get("classes") or [])) or None]
                for t in sorted(transfer, key=lambda t: tuple(str(t.get(k)) for k in
                                                              ("model", "task", "train_source", "test_source")))]
        parts.append(_details(f"All {len(rows)} transfer pairs", _table(
            ["model", "task", "trained on", "tested on", "n_train", "n_test", "AUROC", "classes"], rows,
            numeric=(4, 5, 6))))
    return "".join(parts) + "</section>"


def _top_dims(top: dict) -> str:
    """'class: 12, 5, 33' lines; entries may be dims or (dim, importance) pairs."""
    lines = []
    for cls, dims in (top or {}).items():
        ids = [d[0] if isinstance(d, (list, tuple)) else d for d in dims]
        lines.append(f"<b>{_esc(cls)}</b>: {_esc(', '.join(str(int(i)) for i in ids) or None)}")
    return "<br>".join(lines) or DASH


def _umap_table(reps: list[dict]) -> str:
    """Class/source silhouettes, trustworthiness and continuity of the UMAP rows; '' when none."""
    rows = []
    for r in reps:
        u = r.get("umap") or {}
        if not u.get("n_neighbors") and "silhouette_class" not in u:
            continue  # a 'umap' that only holds continuity from the structure step is not a UMAP row
        rows.append([r["dataset"], _count(r.get("n_records")), ", ".join(r.get("sources") or []) or None,
                     _silhouette_tag(u.get("silhouette_class"), source=False),
                     _silhouette_tag(u.get("silhouette_source"), source=True), fmt(u.get("trustworthiness")),
                     fmt(u.get("continuity")),
                     f"n_neighbors={u.get('n_neighbors', DASH)}, min_dist={u.get('min_dist', DASH)}, "
                     f"{u.get('metric', DASH)}, seed={u.get('seed', DASH)}"])
    if not rows:
        return ""
    return "<h4>Embedding structure</h4>" + _table(
        ["dataset", "ECGs", "sources", "class silhouette", "source silhouette", "trustworthiness", "continuity",
         "UMAP settings"], rows, numeric=(1, 5, 6))


def _structure_table(reps: list[dict], dim: int | None) -> str:
    """kNN agreement, site separability, effective rank and spread of the embedding; '' when none."""
    rows = []
    for r in reps:
        st = r.get("structure") or {}
        site, rank = fnd.site_separability(r), fnd.effective_rank(r)
        if not st and site is None and rank is None:
            continue
        per = {k: v for k, v in (st.get("site_per_source") or {}).items() if _is_num(v)}
        per_text = ("<br>" + _esc(", ".join(f"{s} {v:.2f}" for s, v in sorted(per.items())))) if per else ""
        k = f", k={st['k']}" if st.get("k") is not None else ""
        knn = (f"{fmt(st.get('knn_agreement'))} (chance {fmt(st.get('knn_chance'))}{k})"
               if _is_num(st.get("knn_agreement")) else DASH)
        rows.append([r["dataset"], knn, Raw(_site_tag(site) + per_text), _rank_tag(rank, dim),
                     fmt(st.get("participation_ratio"), 1), fmt(st.get("alignment")), fmt(st.get("uniformity"))])
    if not rows:
        return ""
    return ("<h4>Geometry and site effects</h4>"
            + _p("kNN agreement: share of nearest neighbours with the same class (compare with chance). Site "
                 "separability: cross-validated AUROC of telling the acquisition source from the embedding, overall "
                 "and per source (0.5 = sites look alike). Effective rank: directions carrying variance, out of the "
                 "embedding size.", "note")
            + _table(["dataset", "kNN class agreement", "site separability (AUROC)", "effective rank / dim",
                      "participation ratio", "alignment", "uniformity"], rows, numeric=(1, 4, 5, 6)))


def _shap_table(reps: list[dict], dim: int | None) -> str:
    """Concentration and top dimensions of the explained probe; '' without SHAP rows."""
    rows = []
    for r in reps:
        s = r.get("shap") or {}
        if not any(k in s for k in ("dims_for_90pct", "top_dims", "max_additivity_error")):
            continue
        err = s.get("max_additivity_error")
        of = f" of {dim:,}" if dim else ""
        n90 = s.get("dims_for_90pct")
        rows.append([r["dataset"], s.get("task"), fraction_label(s.get("train_fraction"), None), s.get("seed"),
                     _count(s.get("dims_for_50pct")), _count(n90) + (of if _is_num(n90) else ""), fmt(s.get("gini"), 2),
                     Raw(_top_dims(s.get("top_dims"))),
                     f"{err:.1e}" if _is_num(err) else DASH])  # tiny by design: 3 decimals would read 0.000
    if not rows:
        return ""
    return ("<h4>What the probe relies on (SHAP)</h4>"
            + _p("Dimensions for 50% / 90%: how many embedding dimensions carry that share of the probe's "
                 "attribution; few = the information sits in a small part of the embedding. Gini: 0 = reliance "
                 "spread evenly, 1 = all on one dimension. Additivity error checks that the attributions add up to "
                 "the probe's output (should be ~0).")
            + _table(["dataset", "task", "training set", "seed", "dimensions for 50%", "dimensions for 90%", "Gini",
                      "top dimensions per class", "additivity error"], rows, numeric=(3, 4, 5, 6, 8)))


def _stability_table(reps: list[dict]) -> str:
    """Overlap of the top-k SHAP dims across seeds, training fractions and sources; '' when none computed."""
    rows = []
    for r in reps:
        s = r.get("shap") or {}
        for key, what in (("stability_seeds", "across seeds"), ("stability_fractions", "across training fractions"),
                          ("cross_source_agreement", "across sources")):
            st = s.get(key)
            if not isinstance(st, dict) or not _is_num(st.get("mean_jaccard")):
                continue
            per = ", ".join(f"{c} {v:.2f}" for c, v in (st.get("per_class") or {}).items() if _is_num(v))
            rows.append([r["dataset"], what, st.get("k"), fmt(st["mean_jaccard"], 2), fmt(st.get("chance"), 2),
                         per or None, Raw(_stability_tag(st["mean_jaccard"]))])
    if not rows:
        return ""
    return ("<h4>Are the top dimensions stable?</h4>"
            + _p("Mean Jaccard overlap of each class's top-k SHAP dimensions between runs (0 = none shared, 1 = "
                 "identical), against the overlap random dimensions would give (chance). Unstable top dimensions "
                 "mean explanations should not be read dimension by dimension.", "note")
            + _table(["dataset", "compared", "k", "mean Jaccard", "chance", "per class", "reading"], rows,
                     numeric=(2, 3, 4)))


def _method_line(a: dict) -> str:
    """How the lead attribution was computed, in one escaped line; '' when unknown."""
    labels = (("explainer", "explainer"), ("baseline", "masked signal replaced by"), ("background", "background"),
              ("nsamples", "coalitions per ECG"), ("groups", "feature groups"), ("n_ecgs", "test ECGs explained"),
              ("n_embeddings", "embeddings computed"))
    items = [f"{label}: {_plain(a[k])}" for k, label in labels if a.get(k) is not None]
    return _p("Method \u2014 " + "; ".join(items) + ".", "note") if items else ""


def _lead_table(importance: dict) -> str:
    """Leads as columns, each one's share of the attribution; the three largest in bold."""
    values = {str(k): v for k, v in importance.items() if _is_num(v)}
    if not values:
        return ""
    top = set(sorted(values, key=lambda k: -values[k])[:3])
    cells = [Raw(f"<b>{v * 100:.1f}%</b>" if k in top else f"{v * 100:.1f}%") for k, v in values.items()]
    return _table(list(values), [cells], numeric=range(len(values)))


def _clinical_list(notes: Sequence[str]) -> str:
    """Clinical notes as a list, each with a badge for its verdict."""
    items = []
    for note in notes:
        parsed = fnd.parse_clinical_note(note)
        verdict = parsed[2] if parsed else None
        badge = {"agrees": ("agrees", "good"), "partly": ("partly", "warn"),
                 "disagrees": ("does not agree", "risk")}.get(verdict, ("no expectation", ""))
        items.append(f"<li>{_tag(*badge)} {_esc(note)}</li>")
    return f'<ul class="notes">{"".join(items)}</ul>' if items else ""


def _matrix_table(per_class: dict, corner: str) -> str:
    """A class × column table of numbers (lead or segment importance); '' when empty."""
    classes = [c for c, v in per_class.items() if isinstance(v, dict)]
    columns = list(dict.fromkeys(k for c in classes for k in per_class[c]))
    if not classes or not columns:
        return ""
    rows = [[c] + [fmt(per_class[c].get(k), 3) for k in columns] for c in classes]
    return _table([corner] + columns, rows, numeric=range(1, len(columns) + 1))


def _attribution_block(reps: list[dict], figs: list[dict]) -> str:
    """Which leads drive the probe: shares, heatmap, clinical plausibility and method; '' when none."""
    parts = []
    for r in reps:
        s = r.get("shap") or {}
        if not any(s.get(k) for k in ("lead_importance", "lead_importance_per_class", "clinical_notes")):
            continue
        parts.append(_method_line(s.get("attribution") or {}))
        lead = _lead_table(s.get("lead_importance") or {})
        if lead:
            parts.append(f"<p>Share of the attribution per lead on {_esc(r['dataset'])} (mean over classes):</p>{lead}")
        if s.get("clinical_notes"):
            parts.append("<p>Do the leads match the textbook?</p>" + _clinical_list(s["clinical_notes"]))
        detail = _matrix_table(s.get("lead_importance_per_class") or {}, "class \\ lead")
        detail += _matrix_table(s.get("segment_importance_per_class") or {}, "class \\ segment")
        if detail:
            parts.append(_details("Per-class lead and time-segment importance (mean |SHAP|)", detail))
    lead_figs = [f for f in figs if f.get("kind") == "leads"]
    if not parts and not lead_figs:
        return ""
    intro = _p("The probe's decision was traced back through the model to the ECG itself: leads and time segments "
               "were masked and the change in the probe's output measured (Shapley values). This shows which leads "
               "the model-plus-probe uses for each class, to compare with where a cardiologist would look.")
    return "<h4>Which ECG leads drive the decisions</h4>" + intro + _figures(lead_figs) + "".join(parts)


SECTION_FIGURE_KINDS = ("umap_grid", "cka", "transfer")  # shown in their own sections, not per model


def _representation_section(results: dict, figures: list[dict]) -> str:
    """Per model: UMAP and structure scores and maps, SHAP concentration and stability, lead attribution."""
    parts = ['<section id="representations"><h2>Representations</h2>',
             _p("UMAP maps show the embedding space in 2-D, coloured by diagnostic class and by acquisition "
                "source. Silhouettes and the geometry scores are computed in the full embedding space, not on the "
                "map. Ideally classes separate (high class silhouette, kNN agreement well above chance) while sources "
                "mix (low source silhouette, site separability near 0.5): an embedding that separates hospitals or "
                "devices may be learning site artefacts that will not transfer.")]
    reps = (results.get("representations") or [])
    figures = [f for f in figures if f.get("kind") not in SECTION_FIGURE_KINDS]
    known = _model_order(results)
    models = known + sorted({f.get("model") or "" for f in figures} - set(known))
    dims = fnd.embedding_dims(results)
    for model in models:
        mine = sorted((r for r in reps if r["model"] == model), key=lambda r: str(r.get("dataset")))
        figs = [f for f in figures if (f.get("model") or "") == model]
        if not mine and not figs:
            continue
        dim = dims.get(model)
        parts.append(f"<h3>{_esc(model or 'other figures')}</h3>")
        parts += [_umap_table(mine), _structure_table(mine, dim)]
        parts.append(_figures([f for f in figs if f.get("kind") == "umap"], grid=True))
        parts += [_shap_table(mine, dim), _stability_table(mine)]
        parts.append(_figures([f for f in figs if f.get("kind") == "shap"]))
        parts.append(_attribution_block(mine, figs))
        parts.append(_figures([f for f in figs if f.get("kind") not in ("umap", "shap", "leads")]))
    if len(parts) == 2:
        parts.append(_p("No representation analysis was run."))
    return "".join(parts) + "</section>"


def _umap_grid_section(figures: list[dict]) -> str:
    """Every model's UMAP side by side, one figure per colouring; '' without such figures."""
    figs = [f for f in figures if f.get("kind") == "umap_grid"]
    if not figs:
        return ""
    return ('<section id="umap-grid"><h2>All models side by side (UMAP)</h2>'
            + _p("The same ECGs mapped by every model, coloured by diagnostic class, acquisition source, sex and age "
                 "band. Look for colourings that split the map: class should, source, sex and age ideally should "
                 "not (unless the task is about them).") + _figures(figs) + "</section>")


def _cka_table(rows: list[dict], models: list[str]) -> str:
    """A model × model CKA matrix for one dataset."""
    value = {}
    for r in rows:
        value[(r.get("model_a"), r.get("model_b"))] = value[(r.get("model_b"), r.get("model_a"))] = r.get("cka")
    names = [m for m in models if any(m in k for k in value)]
    table_rows = [[a] + [("1.000" if a == b else fmt(value.get((a, b)))) for b in names] for a in names]
    return _table(["model"] + names, table_rows, numeric=range(1, len(names) + 1))


def _similarity_section(results: dict, figures: list[dict]) -> str:
    """CKA between models' embeddings per dataset (figures and a matrix table); '' without data."""
    rows = [r for r in results.get("similarity") or [] if r.get("model_a") and r.get("model_b")]
    figs = [f for f in figures if f.get("kind") == "cka"]
    if not rows and not figs:
        return ""
    models = _model_order(results)
    models += sorted({str(r[k]) for r in rows for k in ("model_a", "model_b")} - set(models))
    parts = ['<section id="similarity"><h2>Model similarity</h2>',
             _p("Linear CKA compares two models' embeddings of the same ECGs: 1 = the same geometry (up to rotation "
                "and scale), near 0 = unrelated. Models with high CKA have learned much the same thing, so they are "
                "unlikely to complement each other."), _figures(figs, grid=True)]
    dataset_order = [d.get("name") for d in (results.get("datasets") or [])]
    for dataset in _order({str(r.get("dataset")) for r in rows}, dataset_order):
        parts.append(f"<h3>{_esc(dataset)}</h3>")
        parts.append(_cka_table([r for r in rows if str(r.get("dataset")) == dataset], models))
    return "".join(parts) + "</section>"


def _errors_section(results: dict) -> str:
    """Records that were read but not used, with the reason, and per-model counts."""
    errors = (results.get("errors") or [])
    parts = ['<section id="errors"><h2>Records not used</h2>']
    if errors:
        # record "*" marks a whole step (a probe fit, a UMAP) that failed rather than one ECG.
        rows = [[e.get("dataset"), "(whole step)" if e.get("record") == "*" else e.get("record"), e.get("stage"),
                 e.get("model") or None, e.get("reason")]
                for e in sorted(errors, key=lambda e: tuple(str(e.get(k)) for k in ("dataset", "record", "stage")))]
        table = _table(["dataset", "record", "stage", "model", "reason"], rows)
        parts.append(_details(f"{len(errors):,} record problem(s)", table, open_=len(errors) <= MAX_OPEN_ERRORS))
    else:
        parts.append(_p("None: every record was read, embedded and used."))
    counts = [[c.get("dataset"), c.get("model"), _count(c.get("records")), _count(c.get("embedded")),
               _count(c.get("skipped"))] for c in (results.get("counts") or [])]
    if counts:
        parts.append(_table(["dataset", "model", "records read", "embedded", "skipped"], counts, numeric=(2, 3, 4)))
    return "".join(parts) + "</section>"


def _provenance_section(results: dict) -> str:
    """Preprocessing pipeline and hash per model and dataset, then the full experiment config."""
    rows = []
    for p in (results.get("preprocessing") or []):
        pipe = p.get("pipeline") or {}
        steps = pipe.get("steps")
        summary = "; ".join(map(str, steps)) if isinstance(steps, list) else None
        rows.append([p.get("model"), p.get("dataset"), Raw(f"<code>{_esc(p.get('hash'))}</code>"),
                     Raw(_esc(summary) + _details("pipeline", _json_block(pipe)))])
    table = _table(["model", "dataset", "hash", "pipeline"], rows) if rows else _p("No preprocessing recorded.")
    meta = _p(f"ECGLens {results.get('ecglens_version', DASH)}, results schema "
              f"{results.get('schema_version', DASH)}.", "note")
    return (f'<section id="provenance"><h2>Preprocessing and configuration</h2>'
            f"{_p('The same pipeline hash means identical preprocessing; it is part of every cache key.')}"
            f"{table}{_details('Full experiment configuration', _json_block(results.get('experiment', {})))}"
            f"{meta}</section>")


# --------------------------------------------------------------------------- page


def _sections(results: dict, figures: list[dict]) -> list[tuple[str, str, str]]:
    """Every section as (anchor, navigation title, html); empty html = the section is omitted."""
    return [
        ("about", "What was measured", _intro_section()),
        ("experiment", "Experiment", _experiment_section(results)),
        ("models", "Models", _models_section(results)),
        ("leaderboard", "Leaderboard", _leaderboard_section(results)),
        ("summary", "Summary per model", _summary_section(results)),
        ("scarcity", "Data scarcity", _scarcity_section(results)),
        ("transfer", "Transfer", _transfer_section(results, figures)),
        ("representations", "Representations", _representation_section(results, figures)),
        ("umap-grid", "UMAP grid", _umap_grid_section(figures)),
        ("similarity", "Model similarity", _similarity_section(results, figures)),
        ("errors", "Records not used", _errors_section(results)),
        ("provenance", "Preprocessing & config", _provenance_section(results)),
    ]


def render_html(results: dict, figures: list[dict]) -> str:
    """The whole report as one HTML string."""
    exp = results.get("experiment", {})
    name = exp.get("name") or "experiment"
    n_models, n_datasets = len(results.get("models") or []), len(results.get("datasets") or [])
    probes = _all_probes(results) or ["linear"]
    with fnd.cached():  # every section reads the same CIs and comparisons: index them once
        sections = _sections(results, figures)
    nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, body in sections if body)
    body = "".join([
        f"<h1>ECGLens report: {_esc(name)}</h1>",
        _p(f"{n_models} model(s) on {n_datasets} dataset(s); frozen embeddings, "
           f"{', '.join(probe_label(p) for p in probes)} probes.", "sub"),
        f"<nav>{nav}</nav>"] + [body for _, _, body in sections])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>ECGLens report: {_esc(name)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")


def write_report(results: dict, figures: list[dict], out_dir: Path) -> Path:
    """Write out_dir/report.html (self-contained: figures inlined as data: URIs) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(render_html(results, figures), encoding="utf-8")
    return path
