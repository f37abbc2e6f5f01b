"""Report writer: a self-contained, escaped HTML page, the scarcity figure and the terminal table."""
from __future__ import annotations

import copy
import io
import re
from html.parser import HTMLParser

import pytest

from orchestrator.report import DASH, fmt, fmt_pm, results_table, scarcity_figure, transfer_figure, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"
FRACTIONS = (0.1, 0.5, 1.0)
SEEDS = (0, 1)
# Mean macro AUROC per model and fraction: "strong" beats "weak" everywhere, by more than the spread.
AUROC = {"strong": (0.80, 0.86, 0.91), "weak": (0.62, 0.66, 0.70)}


def tiny_png(label: str) -> bytes:
    """A small real PNG drawn with matplotlib (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.add_subplot().plot([0, 1], [0, 1], label=label)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=20)
    return buf.getvalue()


def stats(values: list[float]) -> dict:
    """Summary stats as results.json stores them."""
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": len(values)}


def model(name: str, kind: str) -> dict:
    """A model card entry."""
    return {"name": name, "version": "1.0", "kind": kind, "objective": "none", "embedding_dim": 64,
            "params": 123456, "fingerprint": "abc123", "sampling_rate_hz": 500.0, "num_samples": 5000,
            "leads": ["I", "II", "V1"], "normalization": "per-lead z-score", "backend": "onnxruntime",
            "endpoint": "launched", "replicas": 1, "description": f"test model {name}"}


def make_results() -> dict:
    """A small complete results dict: 2 models, 1 dataset, 3 fractions, 2 seeds, two unused records."""
    probes, summary = [], []
    for name, aurocs in AUROC.items():
        for frac, auroc in zip(FRACTIONS, aurocs):
            per_seed = [auroc - 0.01, auroc + 0.01]
            for seed, value in zip(SEEDS, per_seed):
                probes.append({"model": name, "dataset": "synth", "task": "rhythm", "probe": "linear",
                               "train_fraction": frac, "k_shot": None, "seed": seed, "n_train": int(400 * frac),
                               "n_test": 100, "metrics": {"auroc_macro": value, "auprc_macro": value - 0.1,
                                                          "f1_macro": value - 0.2, "balanced_accuracy": value - 0.15,
                                                          "accuracy": value - 0.1},
                               "per_class_auroc": {"NORM": value, "AF": value}, "c": 1.0,
                               "warnings": ["solver did not converge"] if frac == 0.1 else []})
            summary.append({"model": name, "dataset": "synth", "task": "rhythm", "train_fraction": frac,
                            "k_shot": None, "n_seeds": 2,
                            "metrics": {m: stats([v - d for v in per_seed]) for m, d in
                                        (("auroc_macro", 0), ("auprc_macro", 0.1), ("f1_macro", 0.2),
                                         ("balanced_accuracy", 0.15), ("accuracy", 0.1))}})
    return {
        "schema_version": "1.0", "ecglens_version": "0.1.0",
        "experiment": {"name": "unit-test", "description": "A tiny synthetic benchmark.", "seeds": list(SEEDS),
                       "train_fractions": list(FRACTIONS), "k_shots": [],
                       "split": {"test_fraction": 0.2, "seed": 0, "level": "patient"},
                       "analyses": {"umap": {"n_neighbors": 15}, "shap": {"top_k": 5}}},
        "models": [model("weak", "baseline"), model("strong", "foundation")],
        "datasets": [{"name": "synth", "kind": "synthetic", "n_records": 502, "n_patients": 250,
                      "sources": {"site-a": 300, "site-b": 202}, "classes": {"rhythm": {"NORM": 350, "AF": 150}},
                      "split": {"n_train": 400, "n_test": 100, "train_patients": 200, "test_patients": 50}}],
        "preprocessing": [{"model": m, "dataset": "synth", "hash": f"hash-{m}",
                           "pipeline": {"sampling_rate_hz": 500.0, "steps": ["units->mV", "window=start"]}}
                          for m in AUROC],
        "probes": probes, "summary": summary,
        "representations": [{"model": m, "dataset": "synth", "sources": ["site-a", "site-b"], "n_records": 500,
                             "umap": {"silhouette_class": 0.31, "silhouette_source": 0.62 if m == "weak" else 0.05,
                                      "trustworthiness": 0.93, "n_neighbors": 15, "min_dist": 0.1,
                                      "metric": "cosine", "seed": 0},
                             "shap": {"task": "rhythm", "train_fraction": 1.0, "seed": 0, "dims_for_90pct": 17,
                                      "top_dims": {"NORM": [3, 14, 7], "AF": [42, 3]},
                                      "max_additivity_error": 2.5e-7}} for m in AUROC],
        "errors": [{"dataset": "synth", "record": "rec-0001", "stage": "read", "model": "",
                    "reason": "truncated signal file"},
                   {"dataset": "synth", "record": "rec-0077", "stage": "embed", "model": "weak",
                    "reason": "NaN in lead V1"}],
        "counts": [{"dataset": "synth", "model": m, "records": 502, "embedded": 500 if m == "strong" else 499,
                    "skipped": 2 if m == "strong" else 3} for m in AUROC],
    }


def make_figures() -> list[dict]:
    """UMAP (class, source) and SHAP figures for both models."""
    figs = []
    for m in AUROC:
        for view in ("class", "source"):
            figs.append({"name": f"umap/{m}/{view}", "model": m, "kind": "umap", "png": tiny_png(view),
                         "caption": f"UMAP of {m} by {view}"})
        figs.append({"name": f"shap/{m}/top-dims", "model": m, "kind": "shap", "png": tiny_png("shap"),
                     "caption": f"SHAP of {m}"})
    return figs


def rename_model(results: dict, old: str, new: str) -> dict:
    """A copy of results with one model renamed everywhere it appears."""
    out = copy.deepcopy(results)
    for key in ("models",):
        for row in out[key]:
            if row["name"] == old:
                row["name"] = new
    for key in ("preprocessing", "probes", "summary", "representations", "errors", "counts"):
        for row in out[key]:
            if row.get("model") == old:
                row["model"] = new
    return out


class Structure(HTMLParser):
    """Collects tags, attributes and headings of a page, to inspect it without a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.headings: list[str] = []
        self._heading: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag in ("h1", "h2", "h3"):
            self._heading = ""

    def handle_endtag(self, tag) -> None:
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None

    def handle_data(self, data) -> None:
        if self._heading is not None:
            self._heading += data


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[str, Structure]:
    """The rendered report of the standard results, and its parsed structure."""
    path = write_report(make_results(), make_figures(), tmp_path_factory.mktemp("report"))
    assert path.name == "report.html" and path.exists()
    text = path.read_text(encoding="utf-8")
    parser = Structure()
    parser.feed(text)
    return text, parser


def test_report_is_self_contained(report) -> None:
    text, page = report
    links = [(t, k, v) for t, k, v in page.attrs if k in ("src", "href")]
    assert not [v for _, _, v in links if re.match(r"\s*(https?:)?//", v, re.I)]
    assert "http://" not in text and "https://" not in text
    images = [v for t, k, v in links if t == "img"]
    # The at-a-glance heatmap + scarcity curve + 2 UMAP + 1 SHAP per model.
    assert len(images) == 2 + 3 * len(AUROC)
    assert all(v.startswith("data:image/png;base64,") for v in images)
    assert not {"script", "link", "iframe"} & set(page.tags)


def test_report_structure_and_content(report) -> None:
    text, page = report
    for section in ("What was measured", "The experiment", "Models", "Leaderboard", "Data scarcity",
                    "Representations", "Records not used", "Preprocessing and configuration"):
        assert section in page.headings
    for name in AUROC:
        assert name in page.headings  # per-model scarcity and representation subsections
        assert f"hash-{name}" in text
    assert "site-a (300)" in text and "NORM (350)" in text
    assert "0.910 ± 0.014" in text  # strong at full data, 3 decimals
    assert "generalisation risk" in text  # weak's source silhouette 0.62
    assert "42, 3" in text and "2.5e-07" in text
    assert "<details" in text and "Full experiment configuration" in text
    assert "solver did not converge" in text


def test_leaderboard_ranks_higher_auroc_first(report) -> None:
    text, _ = report
    board = text[text.index('id="leaderboard"'):text.index('id="scarcity"')]
    assert board.index("strong") < board.index("weak")
    assert '<tr class="best"><td class="num">1</td><td>strong</td>' in board
    assert "not clearly different" not in board.split("</h3>", 1)[1].split("</table>")[0]


def test_leaderboard_flags_overlap(tmp_path) -> None:
    results = make_results()
    for row in results["summary"]:
        if row["model"] == "weak" and row["train_fraction"] == 1.0:
            row["metrics"]["auroc_macro"] = {"mean": 0.90, "std": 0.02, "min": 0.88, "max": 0.92, "n": 2}
    text = write_report(results, [], tmp_path).read_text()
    board = text[text.index('id="leaderboard"'):text.index('id="scarcity"')]
    assert board.index("strong") < board.index("weak")
    assert "not clearly different from the best" in board


def test_errors_listed(report) -> None:
    text, _ = report
    section = text[text.index('id="errors"'):text.index('id="provenance"')]
    for record, reason in (("rec-0001", "truncated signal file"), ("rec-0077", "NaN in lead V1")):
        assert record in section and reason in section
    assert "499" in section  # per-model counts


def test_no_errors_says_none(tmp_path) -> None:
    results = make_results()
    results["errors"] = []
    text = write_report(results, [], tmp_path).read_text()
    assert "None: every record was read" in text


def test_text_is_escaped(tmp_path) -> None:
    results = rename_model(make_results(), "weak", EVIL)
    results["errors"][0]["reason"] = 'bad "quote" & <b>tag</b>'
    figures = [dict(f, model=EVIL if f["model"] == "weak" else f["model"], caption=f"{EVIL} caption")
               for f in make_figures()]
    text = write_report(results, figures, tmp_path).read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>tag</b>" not in text and "&lt;b&gt;tag&lt;/b&gt;" in text
    parser = Structure()
    parser.feed(text)
    assert "script" not in parser.tags


def test_null_metrics_render_as_dash(tmp_path) -> None:
    results = make_results()
    for row in results["summary"]:
        if row["model"] == "strong" and row["train_fraction"] == 1.0:
            row["metrics"]["auroc_macro"] = {"mean": None, "std": None, "min": None, "max": None, "n": 0}
            del row["metrics"]["auprc_macro"]  # an undefined metric may also be omitted
    results["representations"][0]["umap"]["silhouette_source"] = None
    text = write_report(results, make_figures(), tmp_path).read_text()
    board = text[text.index('id="leaderboard"'):text.index('id="scarcity"')]
    assert board.index("weak") < board.index("strong")  # undefined AUROC ranks last
    assert "AUROC undefined" in board and DASH in board
    table = results_table(results)
    assert DASH in table
    png, _ = scarcity_figure(results)
    assert png.startswith(PNG_MAGIC)


def test_empty_results_render(tmp_path) -> None:
    results = {"schema_version": "1.0", "ecglens_version": "0.1.0", "experiment": {}, "models": [],
               "datasets": [], "preprocessing": [], "probes": [], "summary": [], "representations": [],
               "errors": [], "counts": []}
    text = write_report(results, [], tmp_path).read_text()
    assert "No training-fraction results to rank." in text
    assert results_table(results) == "no probe results"
    assert scarcity_figure(results)[0].startswith(PNG_MAGIC)


def test_scarcity_figure_is_png() -> None:
    png, caption = scarcity_figure(make_results())
    assert png.startswith(PNG_MAGIC)
    assert "AUROC" in caption and "2 seeds" in caption


def test_results_table_rows() -> None:
    table = results_table(make_results())
    lines = table.splitlines()
    assert len(lines) == 2 + len(AUROC) * len(FRACTIONS)  # header, rule, one row per cell
    assert "AUROC" in lines[0] and "n_train" in lines[0]
    row = next(line for line in lines if line.startswith("strong") and " 100% " in line)
    assert "synth" in row and "rhythm" in row and " 400 " in row and "0.910 ± 0.014" in row
    assert "0.810" in row  # AUPRC mean
    assert any(line.startswith("weak") and "10%" in line and "0.620 ± 0.014" in line for line in lines)


def test_formatting_helpers() -> None:
    assert fmt(None) == DASH and fmt(float("nan")) == DASH and fmt(0.12345) == "0.123"
    assert fmt_pm(None) == DASH and fmt_pm({"mean": 0.5, "std": None}) == "0.500"
    assert fmt_pm({"mean": 0.5, "std": 0.01}) == "0.500 ± 0.010"


def test_runner_shaped_fields(tmp_path) -> None:
    results = make_results()
    exp = results["experiment"]
    exp["scarcity"] = {"train_fractions": exp.pop("train_fractions"), "k_shots": exp.pop("k_shots")}
    results["errors"].append({"dataset": "synth", "record": "*", "stage": "analysis", "model": "weak",
                              "reason": "UMAP failed: boom"})
    del results["representations"][0]["umap"]  # UMAP disabled or failed: SHAP only
    text = write_report(results, [], tmp_path).read_text()
    assert "10%, 50%, 100% of the training split" in text
    assert "(whole step)" in text and "UMAP failed: boom" in text
    assert text.count("<h4>Embedding structure</h4>") == 1


# --------------------------------------------------------------------------- schema 1.1

SOURCES = ("eu", "sa")
DS11 = "synthetic[eu,sa]"
PROBE_KINDS = ("linear", "knn")
# Mean macro AUROC per (model, probe) and fraction; each seed is mean -/+ 0.01 with a CI of +/- 0.02 around it.
AUROC11 = {("alpha", "linear"): (0.85, 0.92, 0.95), ("beta", "linear"): (0.80, 0.86, 0.90),
           ("alpha", "knn"): (0.82, 0.88, 0.91), ("beta", "knn"): (0.78, 0.85, 0.90)}
NOTES = ["AF: top leads II, V1, aVF - agrees with the expectation (II and V1, where atrial activity is clearest; "
         "Goldberger).",
         "STE: top leads I, aVR, V6 - does not agree with the expectation (the territory's leads; UDMI).",
         "NORM: top leads II, V5 - no clinical expectation recorded for this class."]
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def ranked_leads(*top: str) -> dict[str, float]:
    """Lead importance with `top` first (descending), every other lead small."""
    return {lead: (1.0 - 0.1 * top.index(lead) if lead in top else 0.01) for lead in LEADS}


def stability(j: float) -> dict:
    """A SHAP stability entry."""
    return {"k": 10, "mean_jaccard": j, "per_class": {"NORM": j + 0.05, "AF": j - 0.05}, "chance": 0.04}


def representation11(m: str) -> dict:
    """A full 1.1 representation row; alpha separates sites (0.97), beta has collapsed (rank 2.1 of 64)."""
    site = 0.97 if m == "alpha" else 0.55
    lead_share = {lead: (0.30 if lead == "II" else 0.70 / 11) for lead in LEADS}
    return {
        "model": m, "dataset": DS11, "sources": list(SOURCES), "n_records": 600,
        "umap": {"silhouette_class": 0.41, "silhouette_source": 0.58 if m == "alpha" else 0.04,
                 "trustworthiness": 0.91, "continuity": 0.876, "n_neighbors": 15, "min_dist": 0.1,
                 "metric": "cosine", "seed": 0},
        "structure": {"knn_agreement": 0.81, "knn_chance": 0.34, "k": 10, "site_separability": site,
                      "site_per_source": {"eu": site + 0.01, "sa": site - 0.01},
                      "effective_rank": 38.2 if m == "alpha" else 2.1, "participation_ratio": 12.5,
                      "alignment": 0.62, "uniformity": -2.31},
        "site_separability": site, "effective_rank": 38.2 if m == "alpha" else 2.1,
        "shap": {"task": "condition", "train_fraction": 1.0, "seed": 0, "dims_for_50pct": 4, "dims_for_90pct": 12,
                 "gini": 0.71, "top_dims": {"NORM": [3, 14, 7], "AF": [42, 3]}, "max_additivity_error": 2.5e-7,
                 "stability_seeds": stability(0.21 if m == "alpha" else 0.74),
                 "stability_fractions": stability(0.45), "cross_source_agreement": None if m == "beta" else
                 stability(0.33),
                 "lead_importance": lead_share,
                 # Consistent with NOTES: the findings derive their verdicts from these numbers.
                 "lead_importance_per_class": {"AF": ranked_leads("II", "V1", "aVF"),
                                               "STE": ranked_leads("I", "aVR", "V6")},
                 "segment_importance_per_class": {"AF": {"0-2.5 s": 0.4, "2.5-5 s": 0.6}},
                 "attribution": {"explainer": "KernelExplainer", "background": "all groups masked",
                                 "baseline": "zero", "nsamples": 2048, "groups": "12 leads x 4 segments",
                                 "n_ecgs": 24, "n_embeddings": 49200},
                 "clinical_notes": NOTES}}


def make_results_v11() -> dict:
    """A complete 1.1 results dict: 2 models, 2 sources, 2 probe kinds, CIs, comparisons, transfer and more."""
    probes, summary = [], []
    for (name, probe), aurocs in AUROC11.items():
        for frac, auroc in zip(FRACTIONS, aurocs):
            per_seed = [auroc - 0.01, auroc + 0.01]
            for seed, value in zip(SEEDS, per_seed):
                probes.append({"model": name, "dataset": DS11, "task": "condition", "probe": probe,
                               "train_fraction": frac, "k_shot": None, "seed": seed, "n_train": int(480 * frac),
                               "n_test": 120, "metrics": {"auroc_macro": value, "auroc_macro_ci": [value - 0.02,
                                                                                                   value + 0.02],
                                                          "auprc_macro": value - 0.1, "balanced_accuracy": value - 0.2},
                               "per_class_auroc": {"NORM": value}, "warnings": []})
            metrics = {m: stats([v - d for v in per_seed]) for m, d in
                       (("auroc_macro", 0), ("auprc_macro", 0.1), ("balanced_accuracy", 0.2))}
            metrics["auroc_macro"]["ci"] = [auroc - 0.02, auroc + 0.02]  # schema 1.2: CI of the seed mean
            summary.append({"model": name, "dataset": DS11, "task": "condition", "probe": probe,
                            "train_fraction": frac, "k_shot": None, "n_seeds": 2, "metrics": metrics})
    transfer = [{"model": m, "task": "condition", "train_source": a, "test_source": b, "n_train": 300, "n_test": 60,
                 "auroc_macro": (0.95 if a == b else 0.83) if m == "alpha" else (0.90 if a == b else 0.89),
                 "classes": ["AF", "MI", "NORM"]} for m in ("alpha", "beta") for a in SOURCES for b in SOURCES]
    results = {
        "schema_version": "1.1", "ecglens_version": "0.2.0",
        "experiment": {"name": "v11-test", "description": "Schema 1.1 fixture.", "seeds": list(SEEDS),
                       "scarcity": {"train_fractions": list(FRACTIONS), "k_shots": []},
                       "split": {"test_fraction": 0.2, "seed": 0, "level": "patient"}},
        "models": [dict(model("alpha", "foundation"), embedding_dim=256), model("beta", "foundation")],
        "datasets": [{"name": DS11, "kind": "synthetic", "n_records": 600, "n_patients": 300,
                      "sources": {"eu": 300, "sa": 300}, "classes": {"condition": {"NORM": 300, "AF": 200, "MI": 100}},
                      "split": {"n_train": 480, "n_test": 120, "train_patients": 240, "test_patients": 60}}],
        "preprocessing": [], "probes": probes, "summary": summary,
        "comparisons": [
            {"dataset": DS11, "task": "condition", "probe": "linear", "train_fraction": 1.0, "seed": 0,
             "model_a": "alpha", "model_b": "beta", "metric": "auroc_macro", "diff": 0.05, "ci_low": 0.021,
             "ci_high": 0.079, "p_value": 0.002, "delong_p": 0.004},
            {"dataset": DS11, "task": "condition", "probe": "knn", "train_fraction": 1.0, "seed": 0,
             "model_a": "alpha", "model_b": "beta", "metric": "auroc_macro", "diff": 0.01, "ci_low": -0.015,
             "ci_high": 0.035, "p_value": 0.4, "delong_p": None}],
        "label_efficiency": [{"model": m, "dataset": DS11, "task": "condition", "probe": p, "aulc": a,
                              "fraction_to_95pct": f}
                             for m, p, a, f in (("alpha", "linear", 0.912, 0.1), ("beta", "linear", 0.861, 0.5),
                                                ("alpha", "knn", 0.871, 0.5), ("beta", "knn", 0.843, None))],
        "transfer": transfer,
        "transfer_gap": [{"model": "alpha", "task": "condition", "in_domain": 0.95, "out_of_domain": 0.83, "gap": 0.12},
                         {"model": "beta", "task": "condition", "in_domain": 0.90, "out_of_domain": 0.89, "gap": 0.01}],
        "representations": [representation11(m) for m in ("alpha", "beta")],
        "similarity": [{"dataset": DS11, "model_a": "alpha", "model_b": "beta", "cka": 0.42}],
        "errors": [], "counts": [],
    }
    from orchestrator.findings import findings

    results["findings"] = findings(results)
    return results


def make_figures_v11() -> list[dict]:
    """Every figure kind of schema 1.1 (the report draws the transfer heatmaps itself)."""
    figs = []
    for m in ("alpha", "beta"):
        figs += [{"name": f"umap/{m}/{v}", "model": m, "kind": "umap", "png": tiny_png(v), "caption": f"UMAP {m} {v}"}
                 for v in ("class", "source")]
        figs.append({"name": f"shap/{m}", "model": m, "kind": "shap", "png": tiny_png("s"), "caption": f"SHAP {m}"})
        figs.append({"name": f"leads/{m}", "model": m, "kind": "leads", "png": tiny_png("l"),
                     "caption": f"Lead heatmap {m}"})
    figs += [{"name": f"umap-grid/{DS11}/{c}", "model": "", "kind": "umap_grid", "png": tiny_png(c),
              "caption": f"Grid by {c}"} for c in ("class", "source", "sex", "age band")]
    figs.append({"name": f"cka/{DS11}", "model": "", "kind": "cka", "png": tiny_png("cka"), "caption": "CKA heatmap"})
    return figs


def section(text: str, anchor: str) -> str:
    """The HTML of one <section id=anchor>."""
    start = text.index(f'<section id="{anchor}">')
    return text[start:text.index("</section>", start)]


@pytest.fixture(scope="module")
def report11(tmp_path_factory) -> tuple[str, Structure]:
    """The rendered 1.1 report and its parsed structure."""
    text = write_report(make_results_v11(), make_figures_v11(), tmp_path_factory.mktemp("r11")).read_text()
    parser = Structure()
    parser.feed(text)
    return text, parser


def test_v11_sections_in_order_and_self_contained(report11) -> None:
    text, page = report11
    order = ["At a glance", "What was measured", "Leaderboard", "Summary per model", "Data scarcity",
             "Transfer across sources", "Representations", "All models side by side (UMAP)", "Model similarity",
             "Records not used"]
    assert all(h in page.headings for h in order)
    assert [page.headings.index(h) for h in order] == sorted(page.headings.index(h) for h in order)
    for anchor in ("summary", "transfer", "umap-grid", "similarity"):
        assert f'href="#{anchor}"' in text
    images = [v for t, k, v in page.attrs if t == "img" and k == "src"]
    # at a glance 1 + scarcity 1 + transfer heatmaps 2 + per model (2 UMAP, SHAP, leads) 8 + UMAP grid 4 + CKA 1
    assert len(images) == 17 and all(v.startswith("data:image/png;base64,") for v in images)
    assert not {"script", "link", "iframe"} & set(page.tags)
    assert "http://" not in text and "https://" not in text


def test_v11_leaderboard_cis_probe_tables_and_paired_comparisons(report11) -> None:
    text, _ = report11
    board = section(text, "leaderboard")
    assert "linear probe" in board and "kNN probe" in board and "95% CI" in board
    linear, knn = board[board.index("<h4>linear probe"):].split("<h4>kNN probe", 1)
    # alpha at full data: seeds 0.94/0.96, the summary row's seed-mean CI [0.93, 0.97].
    assert '<tr class="best"><td class="num">1</td><td>alpha</td><td class="num">0.950 ± 0.014</td>' \
           '<td class="num">[0.930, 0.970]</td>' in linear
    assert "clearly below the best (paired bootstrap p=0.002)" in linear
    assert "difference -0.050 [-0.079, -0.021], paired bootstrap p=0.002; per-class DeLong tests (Holm), smallest p=0.004" \
        in linear
    assert "not clearly different from the best (paired bootstrap p=0.40)" in knn
    assert "not clearly different" not in linear


def test_v11_summary_cards_show_findings(report11) -> None:
    text, _ = report11
    cards = section(text, "summary")
    assert cards.count('<div class="card">') == 2
    assert cards.index("alpha") < cards.index("beta")
    assert "embeddings separate acquisition sites with AUROC 0.97" in cards
    assert "loses 0.12 AUROC out of domain" in cards
    assert "top-10 SHAP dimensions change across seeds" in cards and "Jaccard 0.21 vs chance 0.04" in cards
    assert "dimensional-collapse risk" in cards  # beta: rank 2.1 of 64
    assert "lead attributions do not match textbook expectations for 1 of 2 classes" in cards
    assert '<li class="k-risk"><span class="icon" title="risk">⚠</span>' in cards
    assert '<li class="k-strength"><span class="icon" title="strength">✓</span>' in cards


def test_v11_scarcity_has_probe_columns_and_label_efficiency(report11) -> None:
    text, page = report11
    scarcity = section(text, "scarcity")
    assert "Label efficiency" in page.headings
    assert "<td>alpha</td><td class=\"num\">0.912</td><td class=\"num\">10%</td>" in scarcity
    assert "label-efficient" in scarcity and "label-hungry" in scarcity
    assert "<td>kNN</td>" in scarcity and "95% CI of the seed mean (main metric)" in scarcity
    png, caption = scarcity_figure(make_results_v11())
    assert png.startswith(PNG_MAGIC) and "solid = linear, dashed = kNN" in caption


def test_v11_transfer_heatmaps_and_gap_table(report11) -> None:
    text, page = report11
    transfer = section(text, "transfer")
    assert "Transfer gap" in page.headings
    assert transfer.count("<img") == 2
    assert "<td>alpha</td><td>condition</td><td class=\"num\">0.950</td><td class=\"num\">0.830</td>" \
           "<td class=\"num\">0.120</td>" in transfer
    assert "generalisation risk" in transfer and "carries over" in transfer
    assert "All 8 transfer pairs" in transfer


def test_transfer_figure_one_png_per_model_and_task() -> None:
    figs = transfer_figure(make_results_v11())
    assert [name for name, _, _ in figs] == ["transfer/alpha/condition", "transfer/beta/condition"]
    assert all(png.startswith(PNG_MAGIC) and "outlined with a dashed line are in domain" in cap for _, png, cap in figs)
    results = make_results_v11()
    results["transfer"][0]["auroc_macro"] = None  # one undefined cell is drawn as a dash, not a crash
    assert len(transfer_figure(results)) == 2
    for row in results["transfer"]:
        row["auroc_macro"] = None
    assert transfer_figure(results) == []


def test_v11_representations(report11) -> None:
    text, page = report11
    reps = section(text, "representations")
    alpha, beta = reps.split("<h3>beta</h3>", 1)
    assert "<h4>Geometry and site effects</h4>" in alpha
    assert "0.810 (chance 0.340, k=10)" in alpha
    assert "0.970 <span class=\"tag risk\">generalisation risk</span>" in alpha and "eu 0.98, sa 0.96" in alpha
    assert "38.2 / 256 (14.9%)" in alpha and "collapse risk" not in alpha
    assert "2.1 / 64 (3.3%) <span class=\"tag risk\">collapse risk</span>" in beta
    assert "0.550 <span class=\"tag good\">little site signal</span>" in beta
    assert "0.876" in alpha  # continuity
    assert "12 of 256" in alpha and "0.71" in alpha  # dims for 90%, Gini
    assert "across seeds" in alpha and "0.21" in alpha and "fragile" in alpha and "across sources" in alpha
    assert "stable" in beta and "across sources" not in beta  # cross_source_agreement is null for beta
    assert "Which ECG leads drive the decisions" in alpha
    assert "<b>30.0%</b>" in alpha  # lead II's share
    assert "coalitions per ECG: 2,048" in alpha and "KernelExplainer" in alpha
    assert "embeddings computed: 49,200" in alpha
    assert "does not agree" in alpha and "top leads I, aVR, V6" in alpha and "no expectation" in alpha
    assert "class \\ segment" in alpha and "2.5-5 s" in alpha
    assert reps.count("<img") == 8 and "Lead heatmap alpha" in alpha and "Lead heatmap beta" in beta
    assert "Grid by" not in reps and "CKA heatmap" not in reps  # shown in their own sections


def test_v11_umap_grid_and_similarity(report11) -> None:
    text, _ = report11
    grid = section(text, "umap-grid")
    assert grid.count("<img") == 4 and "Grid by age band" in grid
    sim = section(text, "similarity")
    assert "CKA heatmap" in sim and sim.count("<img") == 1
    assert "<td>alpha</td><td class=\"num\">1.000</td><td class=\"num\">0.420</td>" in sim
    assert "<td>beta</td><td class=\"num\">0.420</td><td class=\"num\">1.000</td>" in sim


def test_v11_text_is_escaped(tmp_path) -> None:
    results = make_results_v11()
    results["findings"].append({"model": "alpha", "kind": "risk", "text": f"{EVIL} & <b>x</b>"})
    results["representations"][0]["shap"]["clinical_notes"].append(f"{EVIL}: top leads II - agrees with it")
    results["representations"][0]["shap"]["attribution"]["baseline"] = EVIL
    results["transfer"][0]["train_source"] = EVIL
    results["transfer"][1]["test_source"] = "$\\frac{$"  # unescaped, matplotlib's mathtext would raise
    results["similarity"][0]["dataset"] = EVIL
    figures = [dict(f, caption=EVIL) for f in make_figures_v11()]
    text = write_report(results, figures, tmp_path).read_text()
    assert "<script" not in text.lower() and "<b>x</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in text
    parser = Structure()
    parser.feed(text)
    assert "script" not in parser.tags


@pytest.mark.parametrize("key", ["comparisons", "label_efficiency", "transfer", "transfer_gap", "similarity",
                                 "findings", "representations"])
def test_v11_absent_or_empty_keys_do_not_crash(tmp_path, key) -> None:
    for value in ("absent", None, []):
        results = make_results_v11()
        if value == "absent":
            del results[key]
        else:
            results[key] = value
        text = write_report(results, [], tmp_path).read_text()
        assert "<h2>Leaderboard</h2>" in text
    if key == "similarity":
        assert 'id="similarity"' not in text
    if key == "findings":  # an explicit empty list means "no findings" (absent or null: derived from the numbers)
        assert 'id="summary"' not in text


def test_v11_partial_representation_fields(tmp_path) -> None:
    results = make_results_v11()
    r = results["representations"][0]
    r["structure"] = {"knn_agreement": None, "site_separability": None, "site_per_source": {}}
    r["site_separability"] = r["effective_rank"] = None
    r["shap"] = {"task": "condition", "stability_seeds": None, "stability_fractions": None,
                 "cross_source_agreement": None, "lead_importance": {}, "clinical_notes": []}
    del results["representations"][1]["umap"]
    results["models"][1]["embedding_dim"] = None
    text = write_report(results, make_figures_v11(), tmp_path).read_text()
    assert "undefined (one source)" in text
    assert "2.1" in section(text, "representations")  # beta's rank without a known dim


def test_v10_results_render_without_new_sections(tmp_path) -> None:
    text = write_report(make_results(), make_figures(), tmp_path).read_text()
    for anchor in ("transfer", "umap-grid", "similarity"):
        assert f'id="{anchor}"' not in text and f'href="#{anchor}"' not in text
    # Findings are derived from the numbers when results.json predates them.
    cards = section(text, "summary")
    assert "highest macro AUROC on synth/rhythm (linear probe) among 2 models: 0.910 ± 0.014 (SD over 2 seeds" in cards
    assert "<h3>Label efficiency</h3>" not in text and "<th>95% CI</th>" not in section(text, "leaderboard")


def test_regression_task_ranks_by_r2(tmp_path) -> None:
    results = make_results()
    for name, r2 in (("strong", 0.41), ("weak", 0.12)):
        results["summary"].append({"model": name, "dataset": "synth", "task": "age", "probe": "mlp",
                                   "train_fraction": 1.0, "k_shot": None, "n_seeds": 1,
                                   "metrics": {"r2": stats([r2]), "mae": stats([7.5]), "rmse": stats([9.0]),
                                               "pearson_r": stats([0.7])}})
    text = write_report(results, [], tmp_path).read_text()
    board = section(text, "leaderboard")
    age = board[board.index("synth — age"):]
    assert "R² (mean ± SD)" in age and "MAE" in age and "MLP probe" in age
    assert age.index("strong") < age.index("weak")
    assert "R²" in results_table(results)
    assert scarcity_figure(results)[0].startswith(PNG_MAGIC)


def renamed(value, old: str, new: str):
    """A deep copy of a results fragment with every string equal to `old` replaced by `new`."""
    if isinstance(value, dict):
        return {k: renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, old, new) for v in value]
    return new if value == old else value


def test_model_name_is_escaped_in_every_section() -> None:
    from orchestrator.findings import findings
    from orchestrator.report import render_html

    results = renamed(make_results_v11(), "alpha", EVIL)
    results["preprocessing"] = [{"model": EVIL, "dataset": DS11, "hash": "h1", "pipeline": {"steps": ["x"]}}]
    results["errors"] = [{"dataset": DS11, "record": "r1", "stage": "embed", "model": EVIL, "reason": "boom"}]
    results["counts"] = [{"dataset": DS11, "model": EVIL, "records": 3, "embedded": 2, "skipped": 1}]
    results["findings"] = findings(results)
    text = render_html(results, renamed(make_figures_v11(), "alpha", EVIL))
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for anchor in ("models", "leaderboard", "summary", "scarcity", "transfer", "representations", "similarity",
                   "errors", "provenance"):
        assert escaped in section(text, anchor), anchor
    assert "<script" not in text.lower()
    parser = Structure()
    parser.feed(text)
    assert "script" not in parser.tags
