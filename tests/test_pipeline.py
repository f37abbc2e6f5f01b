"""The whole pipeline end to end with real processes, real Ray and real gRPC, on tiny experiments."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

from orchestrator.experiment import parse_experiment
from orchestrator.runner import Hooks, run_experiment

LEADS_12 = {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"}
BASE = {
    "name": "tiny",
    # The Asia-like site records at 257 Hz, so the pipeline's resampling to 500 Hz is exercised.
    "datasets": [{"kind": "synthetic", "sites": ["eu", "as"], "records_per_site": 60, "seed": 1}],
    "models": [{"name": "random-resnet", "replicas": 2}, "handcrafted"],
    "tasks": ["condition"],
    "scarcity": {"train_fractions": [0.5, 1.0]},
    "seeds": [0, 1],
    "probe": {"cv_folds": 3},
    "runtime": {"batch_size": 8},
    # Kept small: the identity copy is the served path's known answer (cosine 1, no AUROC drop).
    "robustness": {"perturbations": ["identity", "gaussian_noise"], "grades": [3], "max_ecgs": 12},
}


def experiment(**changes):
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return parse_experiment(data, "test")


def open_fds_under(folder: Path) -> list[str]:
    """Processes that still hold a file under folder open (a leaked server keeps its log open)."""
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if str(folder) in os.readlink(fd):
                    holders.append(proc.name)
        except OSError:
            continue
    return holders




@pytest.fixture(scope="module")
def baseline(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    results = run_experiment(experiment(), out, show_progress=False).to_dict()
    return out, results


def probe_table(results: dict) -> list:
    return [(p["model"], p["train_fraction"], p["seed"], p["n_train"], p["metrics"]) for p in results["probes"]]


def test_results_json_has_the_documented_fields(baseline):
    out, results = baseline
    assert json.loads((out / "results.json").read_text()) == results
    assert results["schema_version"] == "1.4" and results["partial"] is False
    assert all(c["lost"] == 0 for c in results["counts"])
    assert all(c["n_common"] == results["datasets"][0]["split"]["n_test"] for c in results["comparisons"])
    for row in results["summary"]:  # the seed mean's CI brackets it
        low, high = row["metrics"]["auroc_macro"]["ci"]
        assert low <= row["metrics"]["auroc_macro"]["mean"] <= high
    assert [(x["model_a"], x["model_b"]) for x in results["similarity"]] == [("random-resnet", "handcrafted")]
    assert {m["name"] for m in results["models"]} == {"random-resnet", "handcrafted"}
    assert results["datasets"][0]["sources"] == {"as": 60, "eu": 60}
    assert len(results["probes"]) == 2 * 2 * 2  # models x fractions x seeds
    for probe in results["probes"]:
        assert {"model", "dataset", "task", "train_fraction", "seed", "n_train", "n_test", "metrics"} <= set(probe)
        assert {"auroc_macro", "auprc_macro", "f1_macro", "balanced_accuracy"} <= set(probe["metrics"])
    reps = {r["model"]: r for r in results["representations"]}
    assert set(reps) == {"random-resnet", "handcrafted"}
    assert all("umap" in r and "shap" in r for r in reps.values()), results["errors"]
    for rep in reps.values():
        assert rep["sources"] == ["as", "eu"]
        assert {"silhouette_class", "silhouette_source", "trustworthiness"} <= set(rep["umap"])
        assert rep["shap"]["dims_for_90pct"] >= 1 and rep["shap"]["top_dims"]
        # Exact linear SHAP: values plus base value reproduce the probe's logits.
        assert rep["shap"]["max_additivity_error"] < 1e-6
        assert 1 <= rep["shap"]["dims_for_50pct"] <= rep["shap"]["dims_for_90pct"]
        assert rep["shap"]["stability_seeds"]["mean_jaccard"] is not None
        assert set(rep["shap"]["lead_importance"]) == set(LEADS_12)
        assert abs(sum(rep["shap"]["lead_importance"].values()) - 1) < 1e-6
        assert rep["shap"]["clinical_notes"] and rep["shap"]["attribution"]["n_embeddings"] > 0
        assert 0 <= rep["site_separability"] <= 1 and rep["effective_rank"] >= 1
        assert rep["umap"]["continuity"] is not None
    assert results["errors"] == []
    # Cross-site transfer on the harmonised (coarse) labels: every ordered pair of sites, per model.
    pairs = {(t["model"], t["train_source"], t["test_source"]) for t in results["transfer"]}
    assert pairs == {(m, a, b) for m in ("random-resnet", "handcrafted") for a in ("as", "eu") for b in ("as", "eu")}
    assert {g["model"] for g in results["transfer_gap"]} == {"random-resnet", "handcrafted"}
    assert all(c["embedded"] == 120 and c["skipped"] == 0 for c in results["counts"])
    html = (out / "report.html").read_text()
    assert "random-resnet" in html and "data:image/png;base64" in html
    kinds = {p.name.split("__")[0] for p in (out / "figures").glob("*.png")}
    assert {"umap", "shap", "leads", "similarity", "umap-grid"} <= kinds, kinds
    timings = json.loads((out / "run.json").read_text())["timings_s"]
    steps = ("probe_s", "compare_s", "transfer_s", "analyse_s", "subgroups_s")
    assert {"launch_s", "embed_s", "evaluate_s", "robustness_s", "total_s", *steps} <= set(timings)
    # Each figure is rounded to 3 decimals, hence the 0.01.
    assert sum(timings[s] for s in steps) <= timings["evaluate_s"] + 0.01 <= timings["total_s"] + 0.01


def test_robustness_subgroups_and_calibration_through_the_served_path(baseline):
    out, results = baseline
    rows = {(r["model"], r["perturbation"]): r for r in results["robustness"]}
    assert set(rows) == {(m, p) for m in ("random-resnet", "handcrafted") for p in ("identity", "gaussian_noise")}
    for model in ("random-resnet", "handcrafted"):
        same, noisy = rows[(model, "identity")], rows[(model, "gaussian_noise")]
        # Re-embedded through the servers in other batches: the clean embedding again, to float32 rounding.
        assert same["cosine"] == pytest.approx(1.0, abs=1e-6) and same["auroc_drop"] == pytest.approx(0.0, abs=1e-9)
        assert same["n"] == 12 and same["severity"] == 0 and noisy["severity"] == 3 and noisy["level"] == "0 dB SNR"
        assert noisy["cosine"] < same["cosine"]
    assert (out / "cache" / "robustness").is_dir()  # its own cache, beside (not inside) the main one's keys
    assert {(s["attribute"], s["group"]) for s in results["subgroups"]} >= {("source", "as"), ("source", "eu")}
    for s in results["subgroups"]:
        assert s["gap"] == pytest.approx(s["auroc_macro"] - s["overall"], abs=1e-12)
        assert s["ci"][0] <= s["auroc_macro"] <= s["ci"][1]
    assert {(c["model"], c["probe"]) for c in results["calibration"]} == {(m, "linear") for m in
                                                                           ("random-resnet", "handcrafted")}
    assert all("ece" in p["metrics"] and "brier" in p["metrics"] for p in results["probes"])


def test_handcrafted_probe_separates_classes_built_to_be_separable(baseline):
    _, results = baseline
    full = [p for p in results["probes"] if p["model"] == "handcrafted" and p["train_fraction"] == 1.0]
    assert all(p["metrics"]["auroc_macro"] > 0.9 for p in full), [p["metrics"] for p in full]


def test_shuffled_labels_fall_to_chance(ray_session, tmp_path):
    exp = experiment(models=["handcrafted"], seeds=[0],
                     datasets=[{"kind": "synthetic", "sites": ["eu", "as"], "records_per_site": 60, "seed": 1,
                                "shuffle_labels": True}],
                     analyses={"umap": {"enabled": False}, "shap": {"enabled": False}})
    results = run_experiment(exp, tmp_path, show_progress=False).to_dict()
    aurocs = [p["metrics"]["auroc_macro"] for p in results["probes"]]
    assert all(0.3 < a < 0.7 for a in aurocs), aurocs


def test_killing_a_replica_mid_run_gives_the_identical_result(ray_session, baseline, tmp_path):
    killed = []

    def launched(servers):
        launched.replicas = servers["random-resnet"]

    def embedded(model, done):
        if model == "random-resnet" and done >= 16 and not killed:
            launched.replicas[0].kill()
            killed.append(done)

    results = run_experiment(experiment(), tmp_path, show_progress=False,
                             hooks=Hooks(on_embedded=embedded, on_launched=launched)).to_dict()
    assert killed and killed[0] < 120, "the replica was not killed while work remained"
    out, expected = baseline
    assert results["errors"] == [], [e["reason"] for e in results["errors"]]
    # Same seeds, same records, same embeddings: the whole results.json, representations and key
    # order included, is byte for byte the run without a kill (this also proves determinism).
    for key in expected:
        assert results[key] == expected[key], key
    assert (tmp_path / "results.json").read_bytes() == (out / "results.json").read_bytes()


def test_a_crashed_run_resumes_from_the_cache_without_recomputing(ray_session, baseline, tmp_path):
    cache = tmp_path / "cache"
    exp = experiment(runtime={"batch_size": 8, "cache_dir": str(cache)},
                     analyses={"umap": {"enabled": False}, "shap": {"enabled": False}})

    def crash(model, done):
        if model == "handcrafted" and done >= 24:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(exp, tmp_path / "first", show_progress=False, hooks=Hooks(on_embedded=crash))
    assert open_fds_under(tmp_path / "first") == [], "a server outlived the crashed run"
    shards = {p: p.stat().st_mtime_ns for p in cache.rglob("shard-*.npz")}
    assert shards, "the crashed run cached nothing"
    results = run_experiment(exp, tmp_path / "second", show_progress=False).to_dict()
    assert all(p.stat().st_mtime_ns == t for p, t in shards.items()), "finished batches were recomputed"
    counts = {}
    for shard in cache.rglob("shard-*.npz"):
        import numpy as np

        with np.load(shard) as data:
            for rid in data["ids"].tolist():
                counts[(shard.parent, rid)] = counts.get((shard.parent, rid), 0) + 1
    assert set(counts.values()) == {1}, "an embedding was stored twice"
    # The perturbed copies have a cache of their own: 2 models x 12 ECGs x (identity + one noise grade).
    robust = {k for k in counts if "robustness" in k[0].relative_to(cache).parts}
    assert len(counts) - len(robust) == 2 * 120 and len(robust) == 2 * 12 * 2
    assert probe_table(results) == probe_table(baseline[1])


def test_ctrl_c_stops_every_process(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray", dir="/tmp")}
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ecglens_cli.main", "run", "--dataset", "synthetic:eu@400",
                             "--model", "random-resnet", "--model", "handcrafted", "--quiet", "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    # The two model servers: probes and analyses run as Ray tasks, not services.
    while len(list((out / "logs").glob("*.log"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output[-2000:]
    assert "interrupted" in output
    time.sleep(0.5)
    assert open_fds_under(out) == [], "processes still hold the run's logs open"
    subprocess.run(["rm", "-rf", env["RAY_TMPDIR"]], check=False)


def test_regression_targets_from_metadata_are_probed(ray_session, tmp_path):
    exp = experiment(models=["handcrafted"], seeds=[0], scarcity={"train_fractions": [0.5, 1.0]},
                     probe={"kinds": ["linear", "knn"], "bootstrap": 50}, regression={"targets": ["age"]},
                     analyses={"umap": {"enabled": False}, "shap": {"enabled": False},
                               "structure": {"enabled": False}, "similarity": {"enabled": False}},
                     transfer={"enabled": False})
    results = run_experiment(exp, tmp_path, show_progress=False).to_dict()
    age = [p for p in results["probes"] if p["task"] == "age"]
    assert {(p["probe"], p["train_fraction"]) for p in age} == {(k, f) for k in ("linear", "knn") for f in (0.5, 1.0)}
    for p in age:
        assert {"mae", "rmse", "r2", "pearson_r", "mae_ci"} <= set(p["metrics"]), p["metrics"]
        assert p["metrics"]["mae"] > 0 and p["n_test"] > 0
    half = {p["probe"]: p["n_train"] for p in age if p["train_fraction"] == 0.5}
    full = {p["probe"]: p["n_train"] for p in age if p["train_fraction"] == 1.0}
    assert all(half[k] < full[k] for k in half)


def test_mixed_datasets_share_one_label_space_for_transfer(ray_session, tmp_path):
    from ptbxl_fixture import write_ptbxl

    folder = write_ptbxl(tmp_path / "ptbxl", n_records=80)
    exp = experiment(models=["handcrafted"], seeds=[0], tasks=["coarse"], scarcity={"train_fractions": [1.0]},
                     datasets=[{"kind": "synthetic", "sites": ["eu"], "records_per_site": 80, "seed": 2},
                               {"kind": "ptbxl", "path": str(folder)}],
                     analyses={"umap": {"enabled": False}, "shap": {"enabled": False}, "similarity": {"enabled": False}},
                     transfer={"enabled": True, "task": "coarse", "min_records": 5})
    results = run_experiment(exp, tmp_path / "out", show_progress=False).to_dict()
    assert {d["kind"] for d in results["datasets"]} == {"synthetic", "ptbxl"}
    assert {p["dataset"] for p in results["probes"]} == {d["name"] for d in results["datasets"]}
    pairs = {(t["train_source"], t["test_source"]) for t in results["transfer"]}
    assert {("eu", "ptbxl"), ("ptbxl", "eu")} <= pairs, (pairs, results["errors"])
    assert [g["model"] for g in results["transfer_gap"]] == ["handcrafted"]
    assert {r["dataset"] for r in results["representations"]} == {d["name"] for d in results["datasets"]}


def test_a_dying_endpoint_costs_only_its_own_model(ray_session, tmp_path):
    """The only replica of one model dies mid-run: the other model keeps every record; the run says partial."""
    from ecglens_cli.main import EXIT_PARTIAL, exit_status

    killed = []

    def launched(servers):
        launched.replica = servers["random-resnet"][0]

    def embedded(model, done):
        if model == "random-resnet" and done >= 16 and not killed:
            launched.replica.kill()
            killed.append(done)

    exp = experiment(models=["random-resnet", "handcrafted"], seeds=[0],
                     analyses={"umap": {"enabled": False}, "attribution": {"enabled": False}})
    results = run_experiment(exp, tmp_path, show_progress=False, hooks=Hooks(on_embedded=embedded, on_launched=launched))
    assert killed, "the replica was not killed while work remained"
    counts = {c.model: c for c in results.counts}
    assert counts["handcrafted"].embedded == 120 and counts["handcrafted"].lost == 0
    lost = counts["random-resnet"].lost
    assert lost > 0 and counts["random-resnet"].embedded == 120 - lost
    assert results.partial is True and [c.model for c in results.losses()] == ["random-resnet"]
    split = results.datasets[0].split
    full = [p for p in results.probes if p.model == "handcrafted" and p.train_fraction == 1.0]
    assert full and all(p.n_train + p.n_test == split["n_train"] + split["n_test"] for p in full)
    dying = [p for p in results.probes if p.model == "random-resnet" and p.train_fraction == 1.0]
    assert all(p.n_train + p.n_test < split["n_train"] + split["n_test"] for p in dying)
    assert all(c.n_common == min(p.n_test for p in dying) for c in results.comparisons)
    assert "Partial run" in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["partial"] is True
    assert exit_status(results) == EXIT_PARTIAL and exit_status(results, allow_partial=True) == 0


def test_exit_status_of_complete_and_empty_runs(baseline):
    from ecglens_cli.main import EXIT_NO_RESULTS, exit_status
    from orchestrator.results import Results

    complete = Results.from_dict(baseline[1])
    assert complete.partial is False and exit_status(complete) == 0
    complete.probes = []
    assert exit_status(complete) == EXIT_NO_RESULTS


def test_a_record_changed_under_the_same_path_is_re_embedded_and_the_run_says_so(ray_session, tmp_path):
    from wfdb_fixture import record_name, signal_mv, write_record, write_wfdb_folder

    folder = write_wfdb_folder(tmp_path / "wfdb", n=24)
    off = {"enabled": False}
    exp = experiment(models=["handcrafted"], seeds=[0], tasks=["label"], scarcity={"train_fractions": [1.0]},
                     datasets=[{"kind": "wfdb", "path": str(folder)}], transfer=off,
                     analyses={k: off for k in ("umap", "shap", "structure", "similarity", "attribution")},
                     runtime={"batch_size": 8, "cache_dir": str(tmp_path / "cache")})
    first = run_experiment(exp, tmp_path / "first", show_progress=False).to_dict()
    assert first["errors"] == [] and first["models"][0]["fingerprint_basis"] == "card"
    write_record(folder, record_name(5), signal_mv(5, seed=9))  # new samples, same path and dataset key
    second = run_experiment(exp, tmp_path / "second", show_progress=False).to_dict()
    assert second["errors"] == [{"dataset": first["datasets"][0]["name"], "record": "*", "stage": "warning",
                                 "model": "handcrafted",
                                 "reason": "1 record(s) changed since they were cached; re-embedded"}]
    assert second["counts"] == first["counts"] and second["counts"][0]["embedded"] == 24
    assert second["counts"][0]["skipped"] == 0
