"""Findings: known answers for every rule, thresholds at their edges, deterministic order."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytest

from orchestrator import findings as fnd
from orchestrator.results import Results
from orchestrator.results import queries


def findings(results: dict) -> list[dict]:
    """The findings of a results.json dict, as the dicts written to results.json."""
    return [f.to_dict() for f in fnd.findings(Results.from_dict(results))]


def stats(mean: float, std: float = 0.01, n: int = 2) -> dict:
    """A summary metric entry."""
    return {"mean": mean, "std": std, "min": mean - std, "max": mean + std, "n": n}


def summary(model: str, auroc: float, probe: str = "linear", fraction: float = 1.0, dataset: str = "ds",
            task: str = "cond", ci: list[float] | None = None) -> dict:
    """One summary row with macro AUROC (and its CI when given)."""
    metrics = {"auroc_macro": stats(auroc)}
    if ci is not None:
        metrics["auroc_macro_ci"] = ci
    return {"model": model, "dataset": dataset, "task": task, "probe": probe, "train_fraction": fraction,
            "k_shot": None, "n_seeds": 2, "metrics": metrics}


def base(models: tuple[str, ...] = ("a", "b"), dims: tuple[int, ...] = (256, 64)) -> dict:
    """Results with only models and datasets; each test adds the keys its rule reads."""
    return {"schema_version": "1.1", "models": [{"name": m, "embedding_dim": d} for m, d in zip(models, dims)],
            "datasets": [{"name": "ds"}], "summary": [], "probes": [], "representations": []}


def rep(model: str, **extra) -> dict:
    """A representation row."""
    return {"model": model, "dataset": "ds", "sources": ["eu", "sa"], "n_records": 100, **extra}


def only(rows: list[dict], model: str | None = None, kind: str | None = None) -> list[dict]:
    """Findings filtered by model and kind."""
    return [f for f in rows if (model is None or f["model"] == model) and (kind is None or f["kind"] == kind)]


def comparison(a: str, b: str, diff: float, low: float, high: float, p: float, probe: str = "linear",
               seed: int = 0, delong: float | None = None) -> dict:
    """A comparisons[] row at the full training fraction."""
    return {"dataset": "ds", "task": "cond", "probe": probe, "train_fraction": 1.0, "seed": seed, "model_a": a,
            "model_b": b, "metric": "auroc_macro", "diff": diff, "ci_low": low, "ci_high": high, "p_value": p,
            "delong_p": delong}


# --------------------------------------------------------------------------- leaderboard


def test_best_and_worst_quote_score_and_ci() -> None:
    results = base(("a", "b", "c"), (256, 64, 32))
    results["summary"] = [summary("a", 0.985, ci=[0.97, 0.99]), summary("b", 0.90, ci=[0.88, 0.92]),
                          summary("c", 0.80), summary("a", 0.7, fraction=0.1)]
    out = findings(results)
    best = only(out, "a", "strength")
    assert best and best[0]["text"] == ("highest macro AUROC on ds/cond (linear probe) among 3 models: "
                                        "0.985 [0.970, 0.990] (95% CI of the mean of 2 seeds)")
    worst = only(out, "c", "note")
    assert worst[0]["text"].startswith("lowest macro AUROC on ds/cond (linear probe) among 3 models: "
                                       "0.800 \u00b1 0.010")
    assert not only(out, "b")  # neither best nor worst


def test_the_seed_mean_ci_is_quoted_and_averaged_bounds_never_are() -> None:
    results = base()
    results["summary"] = [summary("a", 0.95), summary("b", 0.90)]
    results["probes"] = [{"model": "a", "dataset": "ds", "task": "cond", "probe": "linear", "train_fraction": 1.0,
                          "k_shot": None, "seed": s, "metrics": {"auroc_macro": 0.95, "auroc_macro_ci": ci}}
                         for s, ci in ((0, [0.92, 0.96]), (1, [0.94, 0.98]))]
    # Two seeds' bounds averaged would say [0.930, 0.970]: not an interval of anything, so mean +- SD.
    assert "0.950 \u00b1 0.010" in only(findings(results), "a", "strength")[0]["text"]
    results["summary"][0]["metrics"]["auroc_macro"]["ci"] = [0.925, 0.972]  # schema 1.2: the seed-mean CI
    assert "0.950 [0.925, 0.972]" in only(findings(results), "a", "strength")[0]["text"]
    one = base()
    one["summary"] = [dict(summary("a", 0.95), n_seeds=1), summary("b", 0.90)]
    one["probes"] = results["probes"][:1]
    # One seed: its own CI, and the n its probe row was scored on.
    assert "0.950 [0.920, 0.960] (95% CI)" in only(findings(one), "a", "strength")[0]["text"]
    one["probes"][0]["n_test"] = 90
    assert "0.950 [0.920, 0.960] (95% CI; n = 90 test ECGs)" in only(findings(one), "a", "strength")[0]["text"]


def test_lone_model_gets_a_note_and_regression_uses_r2() -> None:
    results = base(("a",), (16,))
    results["summary"] = [{"model": "a", "dataset": "ds", "task": "age", "probe": "mlp", "train_fraction": 1.0,
                           "k_shot": None, "n_seeds": 1, "metrics": {"r2": stats(0.41, 0.0, 1), "mae": stats(7.0)}}]
    assert findings(results) == [{"model": "a", "kind": "note", "text": "R\u00b2 on ds/age (MLP probe): 0.410"}]


# --------------------------------------------------------------------------- comparisons


def test_ci_including_zero_is_not_clearly_different_for_both() -> None:
    results = base()
    results["summary"] = [summary("a", 0.91), summary("b", 0.90)]
    results["comparisons"] = [comparison("a", "b", 0.01, -0.01, 0.03, 0.4, delong=0.35)]
    notes = [f["text"] for f in only(findings(results), kind="note") if "not clearly" in f["text"]]
    assert len(notes) == 2
    a_note = next(t for t in notes if t.startswith("not clearly different from b"))
    assert "paired bootstrap p=0.40" in a_note and "per-class DeLong tests (Holm), smallest p=0.35" in a_note and "+0.010" in a_note
    b_note = next(t for t in notes if t.startswith("not clearly different from a"))
    assert "-0.010 [-0.030, 0.010]" in b_note  # oriented b - a


def test_ci_excluding_zero_is_a_strength_for_the_better_model_only() -> None:
    results = base()
    results["summary"] = [summary("a", 0.95), summary("b", 0.90)]
    # Stored as b - a: the reader must flip it.
    results["comparisons"] = [comparison("b", "a", -0.05, -0.07, -0.03, 0.002)]
    out = findings(results)
    assert any(f["text"].startswith("clearly better than b (difference +0.050 [0.030, 0.070], paired "
                                    "bootstrap p=0.002)") for f in only(out, "a", "strength"))
    assert not any("clearly" in f["text"] for f in only(out, "b"))


def test_one_seed_including_zero_makes_the_pair_not_clear() -> None:
    results = base()
    results["summary"] = [summary("a", 0.95), summary("b", 0.90)]
    results["comparisons"] = [comparison("a", "b", 0.05, 0.03, 0.07, 0.002, seed=0),
                              comparison("a", "b", 0.02, -0.01, 0.05, 0.21, seed=1)]
    c = queries.comparison(Results.from_dict(results), "ds", "cond", "linear", 1.0, "a", "b")
    assert c is not None and not c["clear"] and c["p_value"] == 0.21 and c["n"] == 2  # the most conservative seed
    assert any("p=0.21" in f["text"] for f in only(findings(results), "a", "note"))


def test_comparisons_at_other_fractions_or_probes_are_ignored() -> None:
    results = base()
    results["summary"] = [summary("a", 0.95), summary("b", 0.90)]
    results["comparisons"] = [dict(comparison("a", "b", 0.0, -0.1, 0.1, 0.9), train_fraction=0.1),
                              comparison("a", "b", 0.0, -0.1, 0.1, 0.9, probe="knn")]
    assert not any("clearly" in f["text"] for f in findings(results))


# --------------------------------------------------------------------------- label efficiency, transfer


@pytest.mark.parametrize("fraction,kind,phrase", [
    (0.1, "strength", "reaches 95% of its full-data AUROC with 10% of the labels on ds/cond (linear probe; AULC 0.91)"),
    (0.25, "note", "reaches 95% of its full-data AUROC with 25% of the labels"),
    (0.5, "risk", "needs 50% of the labels to reach 95% of its full-data AUROC"),
])
def test_label_efficiency(fraction: float, kind: str, phrase: str) -> None:
    results = base()
    results["summary"] = [summary("a", 0.9)]
    results["label_efficiency"] = [{"model": "a", "dataset": "ds", "task": "cond", "probe": "linear", "aulc": 0.912,
                                    "fraction_to_95pct": fraction}]
    out = [f for f in only(findings(results), "a", kind) if "labels" in f["text"]]
    assert len(out) == 1 and phrase in out[0]["text"]


def test_label_efficiency_without_fraction_says_nothing() -> None:
    results = base()
    results["label_efficiency"] = [{"model": "a", "dataset": "ds", "task": "cond", "probe": "linear", "aulc": 0.9,
                                    "fraction_to_95pct": None}]
    assert findings(results) == []


@pytest.mark.parametrize("gap,kind,phrase", [
    (0.12, "risk", "loses 0.12 AUROC out of domain on cond (in-domain 0.95, out-of-domain 0.83)"),
    (0.05, "risk", "loses 0.05 AUROC"),
    (0.03, "note", "loses 0.03 AUROC"),
    (0.01, "strength", "keeps its AUROC out of domain on cond (gap 0.01; in-domain 0.95"),
    (-0.02, "strength", "gap -0.02"),
])
def test_transfer_gap(gap: float, kind: str, phrase: str) -> None:
    results = base()
    results["transfer_gap"] = [{"model": "b", "task": "cond", "in_domain": 0.95, "out_of_domain": 0.95 - gap,
                                "gap": gap}]
    out = findings(results)
    assert len(out) == 1 and out[0]["kind"] == kind and phrase in out[0]["text"]


def test_transfer_gap_of_a_near_chance_model_is_only_a_note() -> None:
    results = base()
    results["transfer_gap"] = [{"model": "a", "task": "cond", "in_domain": 0.57, "out_of_domain": 0.62, "gap": -0.05}]
    assert findings(results) == [{"model": "a", "kind": "note", "text": "out-of-domain gap -0.05 on cond is not "
                                  "informative: in-domain AUROC is only 0.57"}]


# --------------------------------------------------------------------------- representations


@pytest.mark.parametrize("auroc,kind", [(0.97, "risk"), (0.81, "risk"), (0.8, "note"), (0.6, "note"),
                                        (0.59, "strength"), (0.55, "strength")])
def test_site_separability_thresholds(auroc: float, kind: str) -> None:
    results = base()
    results["representations"] = [rep("a", site_separability=auroc)]
    out = findings(results)
    assert [f["kind"] for f in out] == [kind] and f"{auroc:.2f}" in out[0]["text"]


def test_site_risk_names_the_most_distinct_source_and_reads_structure() -> None:
    results = base()
    results["representations"] = [rep("a", structure={"site_separability": 0.97,
                                                      "site_per_source": {"eu": 0.99, "sa": 0.95}})]
    (f,) = findings(results)
    assert f["kind"] == "risk"
    assert f["text"] == ("embeddings separate acquisition sites with AUROC 0.97 on ds; most distinct: eu 0.99: "
                         "a generalisation risk")


def test_effective_rank_relative_to_dim() -> None:
    results = base()
    results["representations"] = [rep("a", effective_rank=6.0), rep("b", effective_rank=40.0)]
    out = findings(results)
    (risk,) = only(out, "a", "risk")
    assert "effective rank 6.0 of 256 dimensions (2.3%)" in risk["text"] and "collapse" in risk["text"]
    (note,) = only(out, "b", "note")
    assert "effective rank 40.0 of 64 dimensions (62.5%)" in note["text"]


def test_concentration_note() -> None:
    results = base()
    results["representations"] = [rep("a", shap={"task": "cond", "dims_for_50pct": 3, "dims_for_90pct": 12,
                                                 "gini": 0.71})]
    (f,) = findings(results)
    assert f["kind"] == "note"
    assert f["text"] == "90% of the probe's reliance sits in 12 of 256 dimensions (50% in 3) on ds/cond, Gini 0.71"


def test_shap_stability_bands_and_chance() -> None:
    shap = {"task": "cond",
            "stability_seeds": {"k": 10, "mean_jaccard": 0.21, "per_class": {"AF": 0.2}, "chance": 0.04},
            "stability_fractions": {"k": 10, "mean_jaccard": 0.72, "per_class": {}, "chance": 0.04},
            "cross_source_agreement": {"k": 10, "mean_jaccard": 0.45, "per_class": {}, "chance": 0.04}}
    results = base()
    results["representations"] = [rep("a", shap=shap)]
    out = findings(results)
    (risk,) = only(out, "a", "risk")
    assert risk["text"] == "top-10 SHAP dimensions change across seeds on ds/cond (Jaccard 0.21 vs chance 0.04)"
    (strength,) = only(out, "a", "strength")
    assert "are stable across training fractions" in strength["text"] and "0.72" in strength["text"]
    (note,) = only(out, "a", "note")
    assert "partly change across acquisition sources" in note["text"]


def test_fragile_fractions_explain_scarcity() -> None:
    results = base()
    results["representations"] = [rep("a", shap={"task": "cond", "stability_fractions": {
        "k": 5, "mean_jaccard": 0.1, "chance": 0.02}, "stability_seeds": None, "cross_source_agreement": None})]
    (f,) = findings(results)
    assert f["kind"] == "risk" and "shifts when labels are scarce" in f["text"] and "Jaccard 0.10" in f["text"]


LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def ranked(*top: str) -> dict[str, float]:
    """Lead importance with `top` first (descending), every other lead small."""
    values = {lead: 0.01 for lead in LEADS}
    values.update({lead: 1.0 - 0.1 * i for i, lead in enumerate(top)})
    return values


def test_clinical_findings_from_the_lead_importance() -> None:
    per_class_a = {"BBB": ranked("V1", "V2", "V3"), "AF": ranked("V5", "V6", "I"), "SB": ranked("I", "II")}
    per_class_b = {"BBB": ranked("V1", "V2", "V3"), "LBBB": ranked("V6", "V3", "V4"), "XYZ": ranked("V4")}
    results = base()
    # Notes that contradict the importance: the findings must follow the numbers, never the sentences.
    results["representations"] = [
        rep("a", shap={"lead_importance_per_class": per_class_a, "clinical_notes": ["AF: top leads II - agrees with"]}),
        rep("b", shap={"lead_importance_per_class": per_class_b})]
    out = findings(results)
    (risk,) = only(out, "a", "risk")
    assert risk["text"] == ("lead attributions do not match textbook expectations for 1 of 2 classes on ds: "
                            "AF (top leads V5, V6, I)")
    (strength,) = only(out, "b", "strength")
    assert strength["text"] == ("lead attributions agree with textbook expectations for 2 of 2 classes "
                                "(1 only partly) on ds")


def test_classes_without_an_expectation_or_attribution_give_no_finding() -> None:
    results = base()
    results["representations"] = [rep("a", shap={"clinical_notes": ["AF: top leads V5 - does not agree with it"],
                                                  "lead_importance_per_class": {
                                                      "SB": ranked("I"), "XYZ": ranked("V4"),
                                                      "AF": dict.fromkeys(LEADS, 0.0)}})]
    assert findings(results) == []


def test_demo_findings_are_unchanged() -> None:
    """The findings re-derived from the demo's numbers are the ones its results.json holds."""
    results = Results.read(Path(__file__).parent / "fixtures" / "demo-results-trimmed.json")
    stored = [f.to_dict() for f in results.findings]
    derived = [f.to_dict() for f in fnd.findings(results)]
    model = results.representations[0].model
    clinical = [f for f in stored if "lead attributions" in f["text"] and f["model"] == model]
    assert clinical and all(f in derived for f in clinical)


# --------------------------------------------------------------------------- order, robustness


def full_results() -> dict:
    """Every rule firing at least once for two models."""
    results = base()
    results["summary"] = [summary("a", 0.95, ci=[0.93, 0.97]), summary("b", 0.90), summary("a", 0.91, "knn"),
                          summary("b", 0.90, "knn")]
    results["comparisons"] = [comparison("a", "b", 0.05, 0.03, 0.07, 0.002),
                              comparison("a", "b", 0.01, -0.01, 0.03, 0.4, probe="knn")]
    results["label_efficiency"] = [{"model": m, "dataset": "ds", "task": "cond", "probe": "linear", "aulc": 0.9,
                                    "fraction_to_95pct": f} for m, f in (("a", 0.1), ("b", 0.5))]
    results["transfer_gap"] = [{"model": "a", "task": "cond", "in_domain": 0.9, "out_of_domain": 0.78, "gap": 0.12},
                               {"model": "b", "task": "cond", "in_domain": 0.9, "out_of_domain": 0.89, "gap": 0.01}]
    results["representations"] = [
        rep("b", site_separability=0.55, effective_rank=2.1, shap={"task": "cond", "dims_for_90pct": 40}),
        rep("a", site_separability=0.97, effective_rank=40.0,
            shap={"task": "cond", "dims_for_90pct": 12,
                  "stability_seeds": {"k": 10, "mean_jaccard": 0.21, "chance": 0.04}})]
    return results


def test_order_is_model_then_kind_and_deterministic() -> None:
    results = full_results()
    out = findings(results)
    assert [f["model"] for f in out] == sorted((f["model"] for f in out), key=["a", "b"].index)
    for model in ("a", "b"):
        kinds = [f["kind"] for f in out if f["model"] == model]
        assert kinds == sorted(kinds, key=fnd.KINDS.index)
        assert set(kinds) == set(fnd.KINDS)
    assert all(set(f) == {"model", "kind", "text"} for f in out)
    assert all(any(ch.isdigit() for ch in f["text"]) for f in out)  # every sentence carries its number
    shuffled = copy.deepcopy(results)
    rng = random.Random(0)
    for key in ("summary", "comparisons", "label_efficiency", "transfer_gap", "representations"):
        rng.shuffle(shuffled[key])
    assert findings(shuffled) == out
    assert findings(copy.deepcopy(results)) == out


def test_models_listed_first_in_results_order() -> None:
    results = full_results()
    results["models"].reverse()  # b first now
    assert findings(results)[0]["model"] == "b"


def test_empty_and_partial_results() -> None:
    assert findings({}) == []
    assert findings({"models": [], "summary": [], "representations": [{"model": "a", "dataset": "ds"}]}) == []
    results = full_results()
    for key in ("comparisons", "label_efficiency", "transfer_gap", "representations"):
        results[key] = None
    assert only(findings(results), "a", "strength")  # the leaderboard still speaks


def test_schema_1_0_rows_default_to_the_linear_probe() -> None:
    results = base()
    results["summary"] = [summary("a", 0.95), summary("b", 0.90)]
    for row in results["summary"]:
        del row["probe"]
    assert "(linear probe)" in only(findings(results), "a", "strength")[0]["text"]


def test_cached_lookups_match_uncached_ones() -> None:
    results = full_results()
    results["probes"] = [{"model": "b", "dataset": "ds", "task": "cond", "probe": "linear", "train_fraction": 1.0,
                          "k_shot": None, "seed": 0, "metrics": {"auroc_macro_ci": [0.85, 0.95]}}]
    results["summary"][1]["n_seeds"] = 1
    results = Results.from_dict(results)
    row = results.summary[1]
    plain = (queries.metric_ci(results, row, "auroc_macro"),
             queries.comparison(results, "ds", "cond", "linear", 1.0, "b", "a"))
    with queries.cached():
        assert (queries.metric_ci(results, row, "auroc_macro"),
                queries.comparison(results, "ds", "cond", "linear", 1.0, "b", "a")) == plain
    assert plain[0] == (0.85, 0.95) and plain[1]["diff"] == -0.05 and plain[1]["side"] == -1


def test_label_efficiency_of_a_near_chance_model_is_only_a_note():
    derive = findings
    summary = [{"model": "m", "dataset": "d", "task": "t", "probe": "linear", "train_fraction": f, "k_shot": None,
                "n_seeds": 1, "metrics": {"auroc_macro": {"mean": v, "std": 0.0, "min": v, "max": v, "n": 1}}}
               for f, v in ((0.1, 0.56), (1.0, 0.57))]
    results = {"models": [{"name": "m"}], "summary": summary,
               "label_efficiency": [{"model": "m", "dataset": "d", "task": "t", "probe": "linear", "aulc": 0.56,
                                     "fraction_to_95pct": 0.1}]}
    texts = [(f["kind"], f["text"]) for f in derive(results) if "label" in f["text"]]
    assert texts and all(kind == "note" and "not informative" in text and "0.57" in text for kind, text in texts)
