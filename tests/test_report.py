"""Report writer: a self-contained, escaped HTML page, the scarcity figure and the terminal table."""
from __future__ import annotations

import copy
import io
import re
from html.parser import HTMLParser

import pytest

from orchestrator.report import DASH, fmt, fmt_pm, results_table, scarcity_figure, write_report

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
    # Scarcity curve + 2 UMAP + 1 SHAP per model.
    assert len(images) == 1 + 3 * len(AUROC)
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
