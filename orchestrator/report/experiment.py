"""The experiment and models sections: datasets, split, scarcity settings; what each model is."""
from __future__ import annotations

from orchestrator.report.format import DASH, fmt_count, fraction_label, or_dash
from orchestrator.report.markup import Raw, esc, html_table, para
from orchestrator.results import Results
from orchestrator.results.queries import is_num


def experiment_section(results: Results) -> str:
    """Datasets, split, training fractions, k-shots and seeds."""
    exp = (results.experiment or {})
    split = exp.get("split", {})
    parts = ['<section id="experiment"><h2>The experiment</h2>']
    if exp.get("description"):
        parts.append(para(exp["description"]))
    scarcity = exp.get("scarcity") or {}  # the experiment file nests these; accept them flat too
    fractions = ", ".join(fraction_label(f, None)
                          for f in exp.get("train_fractions", scarcity.get("train_fractions", [])))
    shots = ", ".join(fraction_label(None, k) for k in exp.get("k_shots", scarcity.get("k_shots", [])))
    seeds = exp.get("seeds", [])
    tf = split.get("test_fraction")
    parts.append(
        "<ul>"
        f"<li>Split: {esc(fraction_label(tf, None) if tf is not None else None)} of "
        f"{esc(split.get('level', 'patient'))}s held out for testing (split seed {esc(split.get('seed'))}); "
        f"no {esc(split.get('level', 'patient'))} appears in both training and test data.</li>"
        f"<li>Training set sizes: {esc(fractions or None)} of the training split; k-shot: {esc(shots or None)}.</li>"
        f"<li>Seeds: {esc(len(seeds))} ({esc(', '.join(map(str, seeds)) or None)}) \u2014 each seed draws a "
        f"different training subset, so \u00b1 reflects which ECGs happened to be labelled.</li></ul>")
    rows = []
    for d in (results.datasets or []):
        sources = ", ".join(f"{s} ({n:,})" for s, n in sorted((d.sources or {}).items()))
        classes = Raw("<br>".join(
            f"<b>{esc(task)}</b>: " + esc(", ".join(f"{c} ({n:,})" for c, n in counts.items()))
            for task, counts in (d.classes or {}).items()) or DASH)
        sp = d.split or {}
        rows.append([d.name, d.kind, fmt_count(d.n_records), fmt_count(d.n_patients),
                     sources or None, classes,
                     f"{fmt_count(sp.get('n_train'))} ECGs / {fmt_count(sp.get('train_patients'))} patients",
                     f"{fmt_count(sp.get('n_test'))} ECGs / {fmt_count(sp.get('test_patients'))} patients"])
    parts.append("<h3>Datasets</h3>")
    parts.append(html_table(["dataset", "kind", "ECGs", "patients", "sources (ECGs)", "classes (ECGs)",
                         "train", "test"], rows, numeric=(2, 3)) if rows else para("No dataset."))
    return "".join(parts) + "</section>"


def _input_spec(m: dict) -> str:
    """'500 Hz × 5,000 samples (10.0 s); 12 leads: I, II, …'."""
    rate, n = m.sampling_rate_hz, m.num_samples
    leads = m.leads or []
    duration = f" ({n / rate:.1f} s)" if is_num(rate) and is_num(n) and rate else ""
    rate_text = f"{rate:g} Hz" if is_num(rate) else DASH
    return f"{rate_text} \u00d7 {fmt_count(n)} samples{duration}; {len(leads)} leads: {', '.join(leads) or DASH}"


def models_section(results: Results) -> str:
    """One row per model: what it is and what input it expects."""
    rows = []
    for m in (results.models or []):
        name = Raw(f"<b>{esc(m.name)}</b> <span class=\"note\">v{esc(m.version)}</span>"
                   + (f"<br><span class=\"note\">{esc(m.description)}</span>" if m.description else ""))
        served = f"{or_dash(m.backend)}, {or_dash(m.endpoint)}, {or_dash(m.replicas)} replica(s)"
        rows.append([name, m.kind, m.objective, fmt_count(m.params), fmt_count(m.embedding_dim),
                     _input_spec(m), m.normalization, served])
    table = html_table(["model", "kind", "objective", "parameters", "embedding dim", "input", "normalisation",
                    "served by"], rows, numeric=(3, 4)) if rows else para("No model.")
    return f'<section id="models"><h2>Models</h2>{table}</section>'
