"""The report: results.json rendered as one self-contained HTML page, a scarcity figure and a terminal table.

Everything here reads the results dict only (docs/results-schema.md); no model, server or dataset is
touched. Every piece of text passes through html.escape, every image is an inline data: URI, and the
page needs no network, fonts or JavaScript, so it can be mailed or archived as a single file.
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

DASH = "—"  # how a missing or undefined number is shown
METRICS = ("auroc_macro", "auprc_macro", "f1_macro", "balanced_accuracy", "accuracy")
METRIC_LABELS = {"auroc_macro": "AUROC", "auprc_macro": "AUPRC", "f1_macro": "F1",
                 "balanced_accuracy": "Balanced acc.", "accuracy": "Accuracy"}
MAX_OPEN_ERRORS = 50  # longer error lists are collapsed so the page stays readable

INTRO = (
    "Each ECG foundation model turned every ECG into a fixed-length vector of numbers (an "
    "<em>embedding</em>) without being retrained; the models stay frozen. For each model, a simple "
    "linear classifier (a <em>probe</em>, logistic regression) was then trained on those embeddings to "
    "recognise the diagnostic classes, and scored on ECGs from patients it never saw. A model whose "
    "embeddings let such a simple probe work well has captured clinically useful information. The main "
    "score is the <em>AUROC</em>: the probability that the probe ranks a random ECG with a condition above "
    "a random ECG without it (0.5 = chance, 1.0 = perfect), averaged over classes (macro). "
    "<em>Data scarcity</em> was simulated by training the probe on only a fraction of the labelled "
    "training ECGs (or on a fixed number per class), repeated with several random seeds; \u00b1 is the "
    "standard deviation over those seeds. <em>SHAP</em> shows which embedding dimensions the probe relies "
    "on, and <em>UMAP</em> draws a 2-D map of the embedding space in which nearby points are ECGs the "
    "model considers similar."
)
GLOSSARY = (
    ("AUROC", "ranking quality, 0.5 = chance, 1.0 = perfect; macro = mean over classes."),
    ("AUPRC", "area under the precision-recall curve; more sensitive to rare classes than AUROC."),
    ("F1", "harmonic mean of precision and recall of the probe's decisions, averaged over classes."),
    ("Balanced accuracy", "mean per-class recall (sensitivity), so large classes do not dominate."),
    ("Silhouette (class)", "from \u22121 to 1: how well ECGs of the same class cluster together in the "
                           "embedding space; high = classes are well separated."),
    ("Silhouette (source)", "the same for acquisition source (hospital, device, database); high = the "
                            "embedding separates sites, a generalisation risk."),
    ("Trustworthiness", "from 0 to 1: how faithfully the 2-D UMAP map keeps true neighbours together; "
                        "near 1 = the picture can be trusted, below ~0.8 = read it with caution."),
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
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #dfe4ea}
figcaption{font-size:.88rem;color:#3d4652}dl.gloss dt{font-weight:600;float:left;clear:left;width:11rem}
dl.gloss dd{margin-left:11.5rem;margin-bottom:.3rem}pre{background:#f5f7fa;padding:.8rem;overflow:auto;font-size:.82rem}
details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}code{font-size:.88em}
"""


class Raw(str):
    """Text already rendered as HTML; the table builder inserts it unescaped."""


# --------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    """HTML-escaped text of any value; None becomes the dash."""
    return DASH if value is None else html.escape(str(value), quote=True)


def _is_num(x: Any) -> bool:
    """A finite real number (bools and NaN excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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


def fraction_label(fraction: float | None, k_shot: int | None) -> str:
    """'10%' for a training fraction, '5 per class' for k-shot, the dash for neither."""
    if fraction is not None:
        return f"{fraction * 100:g}%"
    return DASH if k_shot is None else f"{k_shot} per class"


def _count(n: Any) -> str:
    """An integer with thousands separators; the dash when missing."""
    return f"{int(n):,}" if _is_num(n) else DASH


def _key(fraction: float | None) -> float | None:
    """A float usable as a dict key despite JSON round-trips."""
    return None if fraction is None else round(float(fraction), 9)


def _metric(row: dict, name: str) -> dict:
    """One metric's summary stats of a summary row ({} when the metric was undefined)."""
    return (row.get("metrics") or {}).get(name) or {}


def _mean(row: dict, name: str = "auroc_macro") -> float | None:
    """The mean of one metric, or None."""
    mean = _metric(row, name).get("mean")
    return mean if _is_num(mean) else None


def _n_train(results: dict) -> dict[tuple, str]:
    """n_train per (model, dataset, task, fraction, k_shot) cell: one value, or 'min–max' over seeds."""
    seen: dict[tuple, list[int]] = defaultdict(list)
    for p in results.get("probes", []):
        seen[(p["model"], p["dataset"], p["task"], _key(p.get("train_fraction")), p.get("k_shot"))].append(p["n_train"])
    return {k: _count(min(v)) if min(v) == max(v) else f"{min(v):,}\u2013{max(v):,}" for k, v in seen.items()}


def _cell_key(row: dict) -> tuple:
    """The (model, dataset, task, fraction, k_shot) identity of a summary or probe row."""
    return row["model"], row["dataset"], row["task"], _key(row.get("train_fraction")), row.get("k_shot")


def _order(names: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Unique names, those in `preferred` first in its order, the rest sorted."""
    names = set(names)
    return [n for n in preferred if n in names] + sorted(names - set(preferred))


def _model_order(results: dict) -> list[str]:
    """Model names in the order of results['models'], then any that only appear in rows."""
    rows = results.get("summary", []) + results.get("probes", [])
    return _order({m["name"] for m in results.get("models", [])} | {r["model"] for r in rows},
                  [m["name"] for m in results.get("models", [])])


def _groups(results: dict) -> list[tuple[str, str]]:
    """(dataset, task) pairs with summary rows, datasets in results['datasets'] order."""
    dataset_order = [d["name"] for d in results.get("datasets", [])]
    pairs = {(r["dataset"], r["task"]) for r in results.get("summary", [])}
    datasets = _order({d for d, _ in pairs}, dataset_order)
    return [(d, t) for d in datasets for t in sorted({t for dd, t in pairs if dd == d})]


def _scarcity_sort(row: dict) -> tuple:
    """Fractions ascending first, then k-shot rows by k."""
    frac, k = row.get("train_fraction"), row.get("k_shot")
    return (0, frac, 0) if frac is not None else (1, 0.0, k if k is not None else -1)


# --------------------------------------------------------------------------- terminal table


def results_table(results: dict) -> str:
    """Plain-text table, one row per (model, dataset, task, training set): n_train and metric means over seeds."""
    n_train = _n_train(results)
    header = ["model", "dataset", "task", "train", "n_train", "seeds", "AUROC (mean \u00b1 sd)",
              "AUPRC", "F1", "bal. acc"]
    rank = {m: i for i, m in enumerate(_model_order(results))}
    rows = sorted(results.get("summary", []),
                  key=lambda r: (rank.get(r["model"], 0), r["model"], r["dataset"], r["task"], _scarcity_sort(r)))
    lines = [[r["model"], r["dataset"], r["task"], fraction_label(r.get("train_fraction"), r.get("k_shot")),
              n_train.get(_cell_key(r), DASH), str(r.get("n_seeds", DASH)),
              fmt_pm(_metric(r, "auroc_macro")), fmt(_mean(r, "auprc_macro")), fmt(_mean(r, "f1_macro")),
              fmt(_mean(r, "balanced_accuracy"))] for r in rows]
    if not lines:
        return "no probe results"
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    numeric = set(range(4, len(header)))  # right-align numbers so decimals line up

    def render(cells: list[str]) -> str:
        """One padded line."""
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), "  ".join("-" * w for w in widths)] + [render(x) for x in lines])


# --------------------------------------------------------------------------- figure


def _png(fig) -> bytes:
    """PNG bytes of a matplotlib Figure, without pyplot (thread-safe) and without a Software stamp."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def scarcity_figure(results: dict) -> tuple[bytes, str]:
    """PNG of macro AUROC (mean ± std over seeds) vs training fraction, one panel per (dataset, task); caption."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    rows = [r for r in results.get("summary", []) if r.get("train_fraction") is not None]
    groups = [g for g in _groups(results) if any((r["dataset"], r["task"]) == g for r in rows)]
    models = _model_order(results)
    colours = {m: colormaps["tab10" if len(models) <= 10 else "tab20"](i % 20) for i, m in enumerate(models)}
    if not groups:
        fig = Figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no training-fraction results", ha="center", va="center")
        return _png(fig), "No probe was trained on a fraction of the training set, so there is no scarcity curve."
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows))
    for i, (dataset, task) in enumerate(groups):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        cell = [r for r in rows if (r["dataset"], r["task"]) == (dataset, task)]
        fractions = sorted({r["train_fraction"] for r in cell})
        for model in models:
            points = sorted((r["train_fraction"], _mean(r), _metric(r, "auroc_macro").get("std"))
                            for r in cell if r["model"] == model and _mean(r) is not None)
            if points:
                xs, ys, sd = zip(*points)
                ax.errorbar(xs, ys, yerr=[s if _is_num(s) else 0.0 for s in sd], marker="o", ms=4,
                            capsize=3, lw=1.6, color=colours[model], label=model)
        ax.axhline(0.5, color="#999999", ls="--", lw=0.8)  # chance level, the floor a reader compares to
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(fractions, [fraction_label(f, None) for f in fractions])
        lows = [iv[0] for iv in map(_interval, cell) if iv is not None]
        ax.set_ylim(min([0.4] + lows) - 0.02, 1.01)  # keep chance visible and never clip a bad model
        ax.set_title(f"{dataset} \u2014 {task}", fontsize=10)
        ax.set_xlabel("fraction of labelled training ECGs (log scale)", fontsize=8)
        ax.set_ylabel("macro AUROC", fontsize=8)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    seeds = sorted({r.get("n_seeds") for r in rows if r.get("n_seeds") is not None})
    caption = (f"Macro AUROC of the linear probe on the test split versus the fraction of labelled training ECGs "
               f"it was trained on (log scale). Points are means over {'/'.join(map(str, seeds)) or 'the'} seeds, "
               f"bars \u00b1 one standard deviation; the dashed line is chance (0.5). A flatter curve means the "
               f"model needs fewer labels.")
    return _png(fig), caption


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
    for d in results.get("datasets", []):
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
    for m in results.get("models", []):
        name = Raw(f"<b>{_esc(m['name'])}</b> <span class=\"note\">v{_esc(m.get('version'))}</span>"
                   + (f"<br><span class=\"note\">{_esc(m['description'])}</span>" if m.get("description") else ""))
        served = f"{m.get('backend', DASH)}, {m.get('endpoint', DASH)}, {m.get('replicas', DASH)} replica(s)"
        rows.append([name, m.get("kind"), m.get("objective"), _count(m.get("params")), _count(m.get("embedding_dim")),
                     _input_spec(m), m.get("normalization"), served])
    table = _table(["model", "kind", "objective", "parameters", "embedding dim", "input", "normalisation",
                    "served by"], rows, numeric=(3, 4)) if rows else _p("No model.")
    return f'<section id="models"><h2>Models</h2>{table}</section>'


def _leaderboard_rows(results: dict, dataset: str, task: str) -> tuple[float | None, list[dict]]:
    """The largest training fraction of a (dataset, task) and each model's summary row there, best first."""
    cell = [r for r in results.get("summary", []) if (r["dataset"], r["task"]) == (dataset, task)]
    fractions = [r["train_fraction"] for r in cell if r.get("train_fraction") is not None]
    if not fractions:
        return None, []
    top = max(fractions)
    at_top = [r for r in cell if _key(r.get("train_fraction")) == _key(top)]
    # Undefined AUROCs sink to the bottom; name breaks ties so the order is deterministic.
    return top, sorted(at_top, key=lambda r: (_mean(r) is None, -(_mean(r) or 0.0), r["model"]))


def _interval(row: dict) -> tuple[float, float] | None:
    """mean ± std of macro AUROC as an interval; None when undefined."""
    mean, std = _mean(row), _metric(row, "auroc_macro").get("std")
    if mean is None:
        return None
    std = std if _is_num(std) else 0.0
    return mean - std, mean + std


def _leaderboard_section(results: dict) -> str:
    """Per (dataset, task): models ranked by macro AUROC at the largest training fraction."""
    parts = ['<section id="leaderboard"><h2>Leaderboard</h2>',
             _p("Models ranked by macro AUROC on the test split when the probe is trained on the largest "
                "training fraction (full data). The best model is highlighted. When a model's mean \u00b1 SD "
                "interval overlaps the best model's, the two are marked \u201cnot clearly different\u201d: "
                "the gap is within seed-to-seed variability.")]
    n_train = _n_train(results)
    any_rows = False
    for dataset, task in _groups(results):
        top, ranked = _leaderboard_rows(results, dataset, task)
        if not ranked:
            continue
        any_rows = True
        best = _interval(ranked[0])
        rows, classes = [], []
        for i, r in enumerate(ranked):
            iv = _interval(r)
            if iv is None:
                note, rank = "AUROC undefined", DASH
            elif i == 0:
                note, rank = "best", "1"
            elif best is not None and iv[1] >= best[0]:
                note, rank = "not clearly different from the best", str(i + 1)
            else:
                note, rank = "", str(i + 1)
            rows.append([rank, r["model"], fmt_pm(_metric(r, "auroc_macro")), fmt_pm(_metric(r, "auprc_macro")),
                         fmt_pm(_metric(r, "balanced_accuracy")), n_train.get(_cell_key(r), DASH),
                         r.get("n_seeds"), note])
            classes.append("best" if i == 0 and iv is not None else "")
        parts.append(f'<h3>{_esc(dataset)} \u2014 {_esc(task)} <span class="note">(trained on '
                     f"{_esc(fraction_label(top, None))} of the training split)</span></h3>")
        parts.append(_table(["rank", "model", "AUROC (mean \u00b1 SD)", "AUPRC", "Balanced acc.", "n_train",
                             "seeds", "note"], rows, classes, numeric=(0, 2, 3, 4, 5, 6)))
    if not any_rows:
        parts.append(_p("No training-fraction results to rank."))
    return "".join(parts) + "</section>"


def _scarcity_section(results: dict) -> str:
    """The scarcity curve, then one table per model: every training-set size × every metric."""
    png, caption = scarcity_figure(results)
    parts = ['<section id="scarcity"><h2>Data scarcity</h2>',
             _p("How each model's probe copes with fewer labelled ECGs. Values are mean \u00b1 SD over seeds "
                "on the same held-out test split."), _figure(png, caption)]
    n_train = _n_train(results)
    warnings: dict[tuple, set[str]] = defaultdict(set)
    for p in results.get("probes", []):
        warnings[_cell_key(p)].update(p.get("warnings") or [])
    for model in _model_order(results):
        rows = sorted((r for r in results.get("summary", []) if r["model"] == model),
                      key=lambda r: (r["dataset"], r["task"], _scarcity_sort(r)))
        if not rows:
            continue
        table_rows = [[r["dataset"], r["task"], fraction_label(r.get("train_fraction"), r.get("k_shot")),
                       n_train.get(_cell_key(r), DASH), r.get("n_seeds")]
                      + [fmt_pm(_metric(r, m)) for m in METRICS]
                      + ["; ".join(sorted(warnings[_cell_key(r)])) or ""] for r in rows]
        parts.append(f"<h3>{_esc(model)}</h3>")
        parts.append(_table(["dataset", "task", "training set", "n_train", "seeds"]
                            + [METRIC_LABELS[m] for m in METRICS] + ["probe warnings"],
                            table_rows, numeric=range(3, 5 + len(METRICS))))
    return "".join(parts) + "</section>"


def _top_dims(top: dict) -> str:
    """'class: 12, 5, 33' lines; entries may be dims or (dim, importance) pairs."""
    lines = []
    for cls, dims in (top or {}).items():
        ids = [d[0] if isinstance(d, (list, tuple)) else d for d in dims]
        lines.append(f"<b>{_esc(cls)}</b>: {_esc(', '.join(str(int(i)) for i in ids) or None)}")
    return "<br>".join(lines) or DASH


def _representation_section(results: dict, figures: list[dict]) -> str:
    """Per model: UMAP structure scores and maps, then SHAP concentration and top dimensions."""
    parts = ['<section id="representations"><h2>Representations</h2>',
             _p("UMAP maps show the embedding space in 2-D, coloured by diagnostic class and by acquisition "
                "source. Silhouettes are computed in the full embedding space, not on the map. Ideally classes "
                "separate (high class silhouette) while sources mix (low source silhouette): an embedding that "
                "separates hospitals or devices may be learning site artefacts that will not transfer.")]
    reps = results.get("representations", [])
    known = _model_order(results)
    models = known + sorted({f.get("model") or "" for f in figures} - set(known))
    for model in models:
        mine = [r for r in reps if r["model"] == model]
        figs = [f for f in figures if (f.get("model") or "") == model]
        if not mine and not figs:
            continue
        parts.append(f"<h3>{_esc(model or 'other figures')}</h3>")
        with_umap = [r for r in mine if r.get("umap")]
        if with_umap:
            rows = []
            for r in with_umap:
                u = r["umap"]
                rows.append([r["dataset"], _count(r.get("n_records")), ", ".join(r.get("sources") or []) or None,
                             _silhouette_tag(u.get("silhouette_class"), source=False),
                             _silhouette_tag(u.get("silhouette_source"), source=True), fmt(u.get("trustworthiness")),
                             f"n_neighbors={u.get('n_neighbors', DASH)}, min_dist={u.get('min_dist', DASH)}, "
                             f"{u.get('metric', DASH)}, seed={u.get('seed', DASH)}"])
            parts.append("<h4>Embedding structure</h4>")
            parts.append(_table(["dataset", "ECGs", "sources", "class silhouette", "source silhouette",
                                 "trustworthiness", "UMAP settings"], rows, numeric=(1, 5)))
        parts += [_figure(f["png"], f.get("caption") or f.get("name", "")) for f in figs if f.get("kind") == "umap"]
        shap_rows = [r for r in mine if r.get("shap")]
        if shap_rows:
            parts.append("<h4>What the probe relies on (SHAP)</h4>")
            parts.append(_p("Dimensions for 90%: how many embedding dimensions carry 90% of the probe's "
                            "attribution; few = the information sits in a small part of the embedding. Additivity "
                            "error checks that the attributions add up to the probe's output (should be ~0)."))
            rows = []
            for r in shap_rows:
                s = r["shap"]
                err = s.get("max_additivity_error")
                rows.append([r["dataset"], s.get("task"), fraction_label(s.get("train_fraction"), None), s.get("seed"),
                             _count(s.get("dims_for_90pct")), Raw(_top_dims(s.get("top_dims"))),
                             f"{err:.1e}" if _is_num(err) else DASH])  # tiny by design: 3 decimals would read 0.000
            parts.append(_table(["dataset", "task", "training set", "seed", "dimensions for 90%",
                                 "top dimensions per class", "additivity error"], rows, numeric=(3, 4, 6)))
        parts += [_figure(f["png"], f.get("caption") or f.get("name", "")) for f in figs if f.get("kind") == "shap"]
        parts += [_figure(f["png"], f.get("caption") or f.get("name", "")) for f in figs
                  if f.get("kind") not in ("umap", "shap")]
    if len(parts) == 2:
        parts.append(_p("No representation analysis was run."))
    return "".join(parts) + "</section>"


def _errors_section(results: dict) -> str:
    """Records that were read but not used, with the reason, and per-model counts."""
    errors = results.get("errors", [])
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
               _count(c.get("skipped"))] for c in results.get("counts", [])]
    if counts:
        parts.append(_table(["dataset", "model", "records read", "embedded", "skipped"], counts, numeric=(2, 3, 4)))
    return "".join(parts) + "</section>"


def _provenance_section(results: dict) -> str:
    """Preprocessing pipeline and hash per model and dataset, then the full experiment config."""
    rows = []
    for p in results.get("preprocessing", []):
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


def render_html(results: dict, figures: list[dict]) -> str:
    """The whole report as one HTML string."""
    exp = results.get("experiment", {})
    name = exp.get("name") or "experiment"
    n_models, n_datasets = len(results.get("models", [])), len(results.get("datasets", []))
    nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t in (
        ("about", "What was measured"), ("experiment", "Experiment"), ("models", "Models"),
        ("leaderboard", "Leaderboard"), ("scarcity", "Data scarcity"), ("representations", "Representations"),
        ("errors", "Records not used"), ("provenance", "Preprocessing & config")))
    body = "".join([
        f"<h1>ECGLens report: {_esc(name)}</h1>",
        _p(f"{n_models} model(s) on {n_datasets} dataset(s); frozen embeddings, linear probes.", "sub"),
        f"<nav>{nav}</nav>", _intro_section(), _experiment_section(results), _models_section(results),
        _leaderboard_section(results), _scarcity_section(results), _representation_section(results, figures),
        _errors_section(results), _provenance_section(results)])
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
