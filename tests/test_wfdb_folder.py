"""WFDB-folder adapter against a written hospital folder: CSV-only meta, values in mV, labels, corrupt records."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from orchestrator.datasets import wfdb_folder as wf
from orchestrator.datasets.base import DatasetSpec, RecordError, label_matrix, open_dataset, parse_dataset_arg
from orchestrator.preprocess import PreprocessSpec, preprocess
from wfdb_fixture import (CORRUPT_BYTES, DUPLICATE, FLAT_RECORD, MISMATCH, MISSING_HEADER, NAN_COUNT, NAN_RECORD,
                          TRUNCATED, UNLABELLED, quantised_mv, record_labels, record_name, record_unit, signal_mv,
                          write_wfdb_folder)

N, SEED = 20, 0
ERRORS = {
    TRUNCATED: r"^bad/truncated: truncated\.dat is truncated: 12345 bytes hold 514 of the 5000 samples per lead",
    MISSING_HEADER: r"^bad/no_header: header bad/no_header\.hea not found in ",
    MISMATCH: r"^bad/mismatch: header declares 4000 samples per lead but mismatch\.dat holds 5000$",
    NAN_RECORD: rf"^bad/nan: {NAN_COUNT} invalid \(NaN\) sample\(s\) in lead\(s\) V2 \({NAN_COUNT}\)$",
    CORRUPT_BYTES: r"^bad/bitflip: checksum mismatch in lead\(s\) .+: signal data is corrupt$",
    DUPLICATE: r"^rec002: listed more than once in labels\.csv \(lines 4, 28\); all copies skipped$",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """20 clean records plus every corrupt case."""
    return write_wfdb_folder(tmp_path_factory.mktemp("hospital"), N, SEED, corrupt=True)


@pytest.fixture(scope="module")
def dataset(folder):
    """The adapter with per-row sources from the CSV's site column."""
    return open_dataset(DatasetSpec("wfdb", {"path": str(folder), "source_column": "site"}))


def index_of(dataset, name: str) -> list[int]:
    """Dataset indices of a record name (several for a duplicate)."""
    return [i for i in range(len(dataset)) if dataset.meta(i).record_id == name]


def test_meta_reads_only_the_csv(folder, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("WFDB file read")

    monkeypatch.setattr(wfdb, "rdheader", refuse)
    monkeypatch.setattr(wfdb, "rdrecord", refuse)
    dataset = open_dataset(DatasetSpec("wfdb", {"path": str(folder)}))
    metas = [dataset.meta(i) for i in range(len(dataset))]
    assert len(metas) == N + 7 and metas[0].record_id == "rec000"
    assert label_matrix(dataset, "label").shape == (N + 7, 6)
    with pytest.raises(RecordError, match="WFDB file read"):  # the patch is live: load reads WFDB files
        dataset.load(0)


def test_load_returns_written_values_in_mv(dataset):
    for k in range(N):
        if record_name(k) == DUPLICATE:
            continue
        (i,) = index_of(dataset, record_name(k))
        record = dataset.load(i)
        assert record.units == "mV" and record.sampling_rate_hz == 500.0
        assert record.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
        assert record.signal.shape == (12, 5000) and record.signal.dtype == np.float32
        # whatever the header unit (mV, uV, V), the gains store 1 uV steps: values agree to float32 precision
        np.testing.assert_allclose(record.signal, quantised_mv(signal_mv(k, SEED)), rtol=1e-6, atol=1e-6,
                                   err_msg=f"{record_name(k)} ({record_unit(k)})")
    assert {record_unit(k) for k in range(N)} == {"mV", "uV", "V"}


def test_labels_patients_and_sources(dataset):
    assert dataset.tasks == {"label": ("AF", "BBB", "NSR", "SB", "STE", "STach")}
    assert dataset.multi_label == {"label": True}
    assert dataset.name == f"wfdb[{Path(dataset.spec.params['path']).name}]"
    for k in range(N):
        meta = dataset.meta(index_of(dataset, record_name(k))[0])
        assert meta.labels["label"] == record_labels(k)
        assert meta.source == ("north" if k % 2 else "south")
    assert dataset.meta(0).patient_id == dataset.meta(1).patient_id == "P0000"
    duplicate = dataset.meta(index_of(dataset, DUPLICATE)[1])
    assert duplicate.labels["label"] == ("AF", "STE")  # "," separates labels too
    assert dataset.meta(index_of(dataset, "ward_b/rec003")[0]).labels["label"] == ("STach",)


def test_defaults_source_folder_and_patient_record(folder, tmp_path):
    rows = [{"rec": record_name(k), "dx": "NSR" if k % 2 else "AF"} for k in range(4)]
    labels = tmp_path / "mine.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["rec", "dx"])
        writer.writeheader()
        writer.writerows(rows)
    dataset = open_dataset(DatasetSpec("wfdb", {"path": str(folder), "labels": str(labels), "record_column": "rec",
                                                "label_column": "dx", "task": "rhythm"}))
    meta = dataset.meta(3)
    assert meta.patient_id == meta.record_id == "ward_b/rec003"
    assert meta.source == folder.name
    assert dataset.tasks == {"rhythm": ("AF", "NSR")} and dataset.multi_label == {"rhythm": False}
    assert dataset.load(3).signal.shape == (12, 5000)


@pytest.mark.parametrize("name", list(ERRORS))
def test_corrupt_records_raise_precise_errors(dataset, name):
    indices = index_of(dataset, name)
    assert indices, name
    for i in indices:
        with pytest.raises(RecordError, match=ERRORS[name]):
            dataset.load(i)


def test_flat_lead_loads_and_good_records_survive(dataset):
    (i,) = index_of(dataset, FLAT_RECORD)
    assert np.ptp(dataset.load(i).signal[8]) == 0.0
    loaded = 0
    for i in range(len(dataset)):
        try:
            dataset.load(i)
            loaded += 1
        except RecordError:
            pass
    assert loaded == N - 1 + 1  # every clean record but the duplicated one, plus the flat one


def test_missing_data_file_and_unknown_units(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "rec000.dat").unlink()
    header = copy / "rec001.hea"
    header.write_text(header.read_text().replace("/mV", "/mmHg"))
    dataset = open_dataset(DatasetSpec("wfdb", {"path": str(copy)}))
    with pytest.raises(RecordError, match=r"^rec000: signal file rec000\.dat not found$"):
        dataset.load(0)
    with pytest.raises(RecordError, match=r"^rec001: lead I has units 'mmHg'; expected mV, uV or V$"):
        dataset.load(1)


def test_describe_counts(dataset):
    info = dataset.describe()
    assert info["records"] == N + 7 and info["kind"] == "wfdb" and info["signals_scanned"] is True
    assert info["patients"] == len({dataset.meta(i).patient_id for i in range(len(dataset))})
    readable = N - 1 + 1  # clean minus the duplicated record, plus the flat one
    assert info["sampling_rates_hz"] == {"500": readable}
    assert info["durations_s"]["counts"] == {"10.0": readable}
    assert info["leads"] == {",".join(wf_leads()): readable}
    assert info["unlabelled"] == [UNLABELLED]
    assert info["sources"] == {"north": 10 + 6, "south": 10 + 1}
    expected = {}
    for k in range(N):
        for label in record_labels(k):
            expected[label] = expected.get(label, 0) + 1
    expected["NSR"] += 6
    expected["AF"] += 1
    expected["STE"] += 1
    assert info["labels"]["label"] == {c: expected.get(c, 0) for c in dataset.tasks["label"]}
    errors = sorted(p["record"] for p in info["problems"] if p["level"] == "error")
    assert errors == sorted([TRUNCATED, MISSING_HEADER, MISMATCH, NAN_RECORD, CORRUPT_BYTES, DUPLICATE, DUPLICATE])
    warnings = [p for p in info["problems"] if p["level"] == "warning"]
    assert warnings == [{"record": FLAT_RECORD, "level": "warning",
                         "problem": f"flat lead(s) V3 (peak-to-peak < {wf.FLAT_PTP_MV} mV)"}]
    quick = dataset.describe(scan_signals=False)  # headers and file sizes only: NaN, checksum, flat need samples
    assert sorted(p["record"] for p in quick["problems"]) == sorted(
        [TRUNCATED, MISSING_HEADER, MISMATCH, DUPLICATE, DUPLICATE])


def wf_leads() -> tuple[str, ...]:
    """The fixture's lead order."""
    from orchestrator.datasets.synthetic import LEADS

    return LEADS


def test_csv_problems_and_params(folder, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("record,label\nrec000,AF\n,NSR\n../outside,NSR\nrec001.hea, SB ; AF \n")
    dataset = open_dataset(DatasetSpec("wfdb", {"path": str(folder), "labels": str(labels)}))
    assert [dataset.meta(i).record_id for i in range(len(dataset))] == ["rec000", "rec001"]
    assert dataset.meta(1).labels["label"] == ("SB", "AF")
    problems = dataset.describe(scan_signals=False)["problems"]
    assert problems[:2] == [{"record": "line 3", "problem": "empty record name", "level": "error"},
                            {"record": "line 4", "problem": "record name '../outside' points outside the folder",
                             "level": "error"}]
    with pytest.raises(ValueError, match="unknown parameter"):
        open_dataset(DatasetSpec("wfdb", {"path": str(folder), "lables": str(labels)}))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['diagnosis'\]"):
        open_dataset(DatasetSpec("wfdb", {"path": str(folder), "label_column": "diagnosis"}))
    with pytest.raises(ValueError, match="not found"):
        open_dataset(DatasetSpec("wfdb", {"path": str(tmp_path / "nowhere")}))
    with pytest.raises(ValueError, match=r"labels CSV .*missing\.csv not found"):
        open_dataset(DatasetSpec("wfdb", {"path": str(folder), "labels": str(tmp_path / "missing.csv")}))


def test_registry_and_preprocessing(folder):
    dataset = open_dataset(parse_dataset_arg(f"wfdb:{folder}"))
    (i,) = index_of(dataset, "rec004")  # a record written in V
    assert record_unit(4) == "V"
    wire = preprocess(dataset.load(i), PreprocessSpec(250.0, ("I", "II", "V1"), 2500))
    assert wire.shape == (3, 2500) and 0.1 < np.abs(wire).max() < 10.0
