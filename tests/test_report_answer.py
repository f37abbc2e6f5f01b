"""Schema 1.3 in the report: the at-a-glance summary first, robustness, subgroups and calibration sections."""
from __future__ import annotations

import json

import pytest

from orchestrator.report import render_html
from orchestrator.report.glance import glance_rows
from orchestrator.results import Results
from tests.test_report import DS11, Structure, make_figures_v11, make_results_v11, section


def make_results_v13() -> dict:
    """The 1.1 fixture (models alpha, beta) plus a random-init control and the 1.3 lists."""
    results = Results.coerce(make_results_v11()).to_dict()
    results = json.loads(json.dumps(results, default=lambda row: row.to_dict()))
    results["schema_version"] = "1.3"
    results["models"].append(dict(results["models"][1], name="random-init", objective="none (random initialisation)"))
    for row in list(results["summary"]):
        if row["model"] == "beta":
            low = json.loads(json.dumps(row))
            low["model"] = "random-init"
            low["metrics"]["auroc_macro"].update(mean=0.6, ci=[0.58, 0.62])
            results["summary"].append(low)
    for row in results["summary"]:
        row["metrics"]["ece"] = {"mean": {"alpha": 0.04, "beta": 0.2}.get(row["model"], 0.3), "std": 0.0}
    results["robustness"] = [
        {"model": m, "dataset": DS11, "task": "condition", "perturbation": p, "severity": g, "level": f"{g} x",
         "n": 64, "cosine": 1.0 if p == "identity" else 0.9 - 0.05 * g,
         "auroc_macro": 0.9 - (0.0 if p == "identity" else d * g), "auroc_clean": 0.9,
         "auroc_drop": 0.0 if p == "identity" else d * g}
        for m, d in (("alpha", 0.01), ("beta", 0.05)) for p, grades in (("identity", (0,)), ("gaussian_noise", (1, 3)))
        for g in grades]
    results["subgroups"] = [
        {"model": m, "dataset": DS11, "task": "condition", "probe": "linear", "train_fraction": 1.0,
         "attribute": "sex", "group": g, "n": 60, "n_patients": 30, "auroc_macro": 0.9 + gap, "ci": [0.85 + gap, 0.95 + gap],
         "overall": 0.9, "gap": gap, "gap_ci": [gap - 0.03, gap + 0.03]}
        for m, gaps in (("alpha", (0.01, -0.01)), ("beta", (0.12, -0.12))) for g, gap in zip(("female", "male"), gaps)]
    results["calibration"] = [
        {"model": m, "dataset": DS11, "task": "condition", "probe": "linear", "train_fraction": 1.0, "n": 240,
         "ece": e, "brier": 0.2, "bins": [{"low": 0.5, "high": 0.6, "confidence": 0.55, "frequency": 0.5, "n": 100},
                                          {"low": 0.9, "high": 1.0, "confidence": 0.95, "frequency": 0.9, "n": 140}]}
        for m, e in (("alpha", 0.04), ("beta", 0.2))]
    return results


@pytest.fixture(scope="module")
def report13() -> tuple[str, Structure]:
    text = render_html(make_results_v13(), make_figures_v11())
    page = Structure()
    page.feed(text)
    return text, page


def test_the_report_opens_with_the_answer(report13) -> None:
    text, page = report13
    sections = [h for h in page.headings[1:] if h in ("At a glance", "What was measured", "Leaderboard")]
    assert sections == ["At a glance", "What was measured", "Leaderboard"]
    glance = section(text, "glance")
    assert "vs random-init" in glance and "random-init, the same architecture" in glance
    assert "0.950 [0.930, 0.970]" in glance and "0.600 [0.580, 0.620]" in glance  # AUROC, CI of the seed mean
    assert "(worst: gaussian_noise)" in glance and "(sex=male)" in glance
    assert glance.count("data:image/png;base64,") == 1


def test_glance_rows_read_every_headline_number() -> None:
    cell, rows = glance_rows(Results.from_dict(make_results_v13()))
    assert cell[:3] == (DS11, "condition", "linear")
    by = {r.model: r.values for r in rows}
    assert by["alpha"]["robust_drop"] == pytest.approx(0.03) and by["beta"]["robust_drop"] == pytest.approx(0.15)
    assert by["beta"]["subgroup_gap"] == -0.12 and by["alpha"]["ece"] == 0.04
    assert by["random-init"]["vs_control"] is None
    assert by["alpha"]["vs_control"] == pytest.approx(by["alpha"]["auroc"] - 0.6)


def test_robustness_and_subgroup_sections(report13) -> None:
    text, page = report13
    assert {"Robustness to real-world noise", "Patient subgroups and calibration", "Calibration"} <= set(page.headings)
    robust = section(text, "robustness")
    assert "64 test ECGs" in robust and "cosine 1.000000" in robust  # the identity copy: the noise floor
    assert "fragile" in robust and "robust" in robust  # beta loses 0.15 at grade 3, alpha 0.03
    groups = section(text, "subgroups")
    assert groups.count("worse for this group") == 1 and groups.count("better for this group") == 1
    assert "over- or under-confident" in groups  # beta's ECE 0.2
    assert groups.count("data:image/png;base64,") == 2  # a reliability diagram per model with calibration rows


def test_older_results_have_no_new_sections() -> None:
    text = render_html(make_results_v11(), make_figures_v11())
    assert 'id="robustness"' not in text and 'id="subgroups"' not in text
    assert 'id="glance"' in text  # the answer needs only the summary
