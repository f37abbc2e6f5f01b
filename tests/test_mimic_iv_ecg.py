"""MIMIC-IV-ECG adapter against a fixture in the release layout: laziness, values, heuristic labels, corrupt records."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimic_fixture import GAIN, LEADS, MEASUREMENT_COLUMNS, RECORD_LIST_COLUMNS, plan, record_signal, write_mimic
from orchestrator.datasets import mimic_iv_ecg as mimic
from orchestrator.datasets.base import DatasetSpec, RecordError, label_matrix, open_dataset, parse_dataset_arg
from orchestrator.datasets.describe import describe, detect_kind, spec_from_arg
from orchestrator.datasets.mimic_statements import TASKS, labels_of
from orchestrator.preprocess import CANONICAL_LEADS, PreprocessSpec, preprocess

N, SEED = 24, 0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """An intact release folder of 24 records."""
    return write_mimic(tmp_path_factory.mktemp("mimic"), N, SEED)


@pytest.fixture(scope="module")
def dataset(root):
    """The adapter, opened through the registry by its short kind."""
    return open_dataset(parse_dataset_arg(f"mimic:{root}"))


def copy_of(root: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture, to damage."""
    return Path(shutil.copytree(root, tmp_path / "release"))


def test_fixture_is_in_the_release_layout(root):
    for name, columns in (("record_list.csv", RECORD_LIST_COLUMNS), ("machine_measurements.csv", MEASUREMENT_COLUMNS)):
        with open(root / name, newline="") as f:
            assert tuple(next(csv.reader(f))) == columns
    heas = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.hea"))
    assert len(heas) == N
    assert all(re.fullmatch(r"files/p\d{4}/p(\d{8})/s(\d{8})/\2\.hea", h) and h[7:11] == h[13:17] for h in heas)


def test_records_ids_and_patients_follow_record_list(dataset):
    rows = plan(N, SEED)
    assert dataset.spec.kind == "mimic-iv-ecg" and len(dataset) == N
    assert dataset.record_ids() == [f"mimic-{r['study_id']}" for r in rows]
    metas = [dataset.meta(i) for i in range(N)]
    assert [m.patient_id for m in metas] == [f"mimic-p{r['subject_id']}" for r in rows]
    assert len({m.patient_id for m in metas}) < N  # the plan gives some patients several ECGs
    assert metas[0].extra["ecg_time"] == rows[0]["ecg_time"] and metas[0].extra["rr_interval"] == 600.0
    assert metas[4].extra["p_axis"] is None  # 29999 is the release's "not measured"
    assert metas[0].extra["label_source"] == mimic.LABEL_SOURCE


def test_labels_match_the_statements_written(dataset):
    rows = plan(N, SEED)
    for i, row in enumerate(rows):
        labels = dataset.meta(i).labels
        assert labels["rhythm"] == row["rhythm"], row["statements"]
        assert labels["normality"] == row["normality"], row["statements"]
        assert labels["coarse"] == row["coarse"], row["statements"]
    y = label_matrix(dataset, "rhythm")
    assert y.shape == (N, len(TASKS["rhythm"])) and y[:, TASKS["rhythm"].index("AF")].sum() == 2


@pytest.mark.parametrize("statements, task, expected", [
    (["Abnormal ECG"], "normality", ("abnormal",)),
    (["Otherwise normal ECG"], "normality", ("normal",)),
    (["Incomplete right bundle branch block"], "coarse", None),
    (["Incomplete left bundle branch block", "Sinus rhythm"], "coarse", ("NSR",)),
    (["Sinus rhythm with first degree AV block"], "coarse", ("NSR", "1dAVb")),
    (["ATRIAL  FIBRILLATION"], "rhythm", ("AF",)),
    (["Atrial fibrillation has replaced Sinus rhythm"], "rhythm", None),
    (["Sinus rhythm no longer present"], "rhythm", None),
    (["Atrial fibrillation", "Atrial flutter"], "rhythm", ("AF", "AFL")),
    (["Demand pacing"], "rhythm", ("paced",)),
])
def test_statement_rules(statements, task, expected):
    assert labels_of(statements).get(task) == expected


def test_meta_opens_no_signal_file(root, monkeypatch):
    import wfdb

    def refuse(*args, **kwargs):
        raise AssertionError("signal read")

    monkeypatch.setattr(wfdb, "rdrecord", refuse)
    dataset = open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(root)}))
    assert all(dataset.meta(i).labels is not None for i in range(len(dataset)))
    dataset.content_token(0)
    with pytest.raises(RecordError, match="signal read"):  # the patch is live: load would read
        dataset.load(0)


def test_load_returns_the_written_signal(dataset):
    rows = plan(N, SEED)
    for i in (0, 7, N - 1):
        record = dataset.load(i)
        expected = record_signal(rows[i]["study_id"], rows[i]["condition"], SEED)
        assert record.leads == LEADS and record.sampling_rate_hz == 500.0 and record.units == "mV"
        assert record.signal.shape == (12, 5000)
        assert np.abs(record.signal - expected).max() <= 0.5 / GAIN + 1e-9


def test_preprocess_puts_avl_before_avf(dataset):
    record = dataset.load(3)
    wire = preprocess(record, PreprocessSpec(500.0, CANONICAL_LEADS, 5000))
    assert np.allclose(wire[CANONICAL_LEADS.index("aVL")], record.signal[LEADS.index("aVL")], atol=1e-6)
    assert np.allclose(wire[CANONICAL_LEADS.index("aVF")], record.signal[LEADS.index("aVF")], atol=1e-6)
    assert not np.allclose(record.signal[LEADS.index("aVL")], record.signal[LEADS.index("aVF")])


def test_corrupt_records_cost_only_themselves(root, tmp_path):
    release = copy_of(root, tmp_path)
    rows = plan(N, SEED)
    truncated, headerless, bad_rate = (release / rows[k]["path"] for k in (2, 5, 9))
    dat = truncated.parent / (truncated.name + ".dat")
    with open(dat, "r+b") as f:
        f.truncate(dat.stat().st_size // 2 + 1)
    (headerless.parent / (headerless.name + ".hea")).unlink()
    hea = bad_rate.parent / (bad_rate.name + ".hea")
    hea.write_text(hea.read_text().replace(" 12 500 5000", " 12 -500 5000", 1))
    dataset = open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(release)}))
    failed = {}
    for i in range(len(dataset)):
        try:
            assert dataset.load(i).signal.shape == (12, 5000)
        except RecordError as err:
            failed[i] = str(err)
    assert sorted(failed) == [2, 5, 9]
    assert "bytes" in failed[2] and "missing" in failed[5] and "sampling rate" in failed[9]
    assert all(failed[i].startswith(f"mimic-{rows[i]['study_id']}") for i in failed)
    summary = describe(DatasetSpec("mimic-iv-ecg", {"path": str(release)}))
    assert summary["problem_counts"] == {"bad_record": 2, "missing_file": 1}
    assert {p["where"] for p in summary["problems"]} == {f"mimic-{rows[i]['study_id']}" for i in (2, 5, 9)}


def test_bad_rows_are_skipped_and_reported(root, tmp_path):
    release = copy_of(root, tmp_path)
    with open(release / "record_list.csv", "a", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x1", "40000001", "40000001", "", "files/p1000/p10000001/s40000001/40000001"])
        writer.writerow(["10000001", "40000002", "40000002", "", "../../etc/passwd"])
        writer.writerow(["10000001", "40000003", "40000003", "", ""])  # path derived by the release's rule
    with open(release / "machine_measurements.csv", "a", newline="") as f:
        csv.writer(f).writerow(["10000009", "49999999", "", "", "Sinus rhythm", *[""] * 26])
    dataset = open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(release)}))
    assert len(dataset) == N + 1
    assert dataset.record_path(N) == release / "files/p1000/p10000001/s40000003/40000003"
    problems = dataset.metadata_problems()
    assert [w for w, _ in problems] == [f"record_list.csv line {N + 2}", f"record_list.csv line {N + 3}"]
    assert "leaves the release folder" in problems[1][1]
    assert dataset.meta(N).labels == {"rhythm": (), "normality": (), "coarse": ()}
    assert dataset.unlisted_reports == 1
    with pytest.raises(RecordError, match="missing"):
        dataset.load(N)


def test_content_token_follows_the_files(root, tmp_path):
    release = copy_of(root, tmp_path)
    dataset = open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(release)}))
    before = [dataset.content_token(i) for i in range(3)]
    assert before == [dataset.content_token(i) for i in range(3)] and len(set(before)) == 3
    dat = dataset.record_path(1).parent / (dataset.record_path(1).name + ".dat")
    os.utime(dat, ns=(dat.stat().st_atime_ns, dat.stat().st_mtime_ns + 1_000_000_000))
    after = [dataset.content_token(i) for i in range(3)]
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]


def test_kinds_and_detection(root, tmp_path):
    long = parse_dataset_arg(f"mimic-iv-ecg:{root}")
    assert open_dataset(long).spec == open_dataset(parse_dataset_arg(f"mimic:{root}")).spec
    assert detect_kind(root) == "mimic-iv-ecg" and spec_from_arg(str(root)).kind == "mimic-iv-ecg"
    with pytest.raises(ValueError, match="record_list.csv"):
        open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(tmp_path)}))
    with pytest.raises(ValueError, match="unknown parameter"):
        open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(root), "sampling_rate": 250}))


def test_missing_measurements_file_leaves_records_unlabelled(root, tmp_path):
    release = copy_of(root, tmp_path)
    (release / "machine_measurements.csv").unlink()
    dataset = open_dataset(DatasetSpec("mimic-iv-ecg", {"path": str(release)}))
    assert len(dataset) == N and not label_matrix(dataset, "rhythm").any()
    assert describe(dataset.spec)["problem_counts"] == {"missing_file": 1}


def test_cli_describe_detects_and_summarises(root):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "ecglens_cli.main", "datasets", "describe", str(root), "--json"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["kind"] == "mimic-iv-ecg" and summary["records"] == N and summary["headers_read"] == N
    assert summary["leads"] == list(LEADS) and summary["sampling_rates_hz"] == [500.0]
    assert summary["label_counts"]["rhythm"]["AF"] == 2 and summary["with_machine_report"] == 22
    assert summary["label_source"] == mimic.LABEL_SOURCE and summary["problems"] == []
