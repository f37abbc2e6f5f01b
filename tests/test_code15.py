"""CODE-15% adapter against a fixture in the official layout: laziness, values, padding, labels, corrupt rows."""
from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from code15_fixture import (ABSENT_EXAM, MISSING_PART_EXAM, SAMPLES, STORED_PER_MV, ZERO_EXAM, exam_plan, signal_mv,
                            write_code15)
from orchestrator.datasets import code15 as c15
from orchestrator.datasets.base import (COARSE_CLASSES, DatasetSpec, RecordError, label_matrix, open_dataset,
                                        parse_dataset_arg)
from orchestrator.preprocess import PreprocessSpec, preprocess

N_EXAMS, PARTS, SEED = 30, 2, 0
CORRUPT_IDS = (MISSING_PART_EXAM, ABSENT_EXAM, ZERO_EXAM)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A corrupt fixture: 30 good exams in two parts plus three broken rows at the end of exams.csv."""
    return write_code15(tmp_path_factory.mktemp("code15"), N_EXAMS, PARTS, SEED, corrupt=True)


@pytest.fixture(scope="module")
def dataset(root):
    """The adapter, opened through the registry."""
    return open_dataset(DatasetSpec("code15", {"path": str(root)}))


@pytest.fixture(scope="module")
def plan():
    """What the fixture wrote, exam by exam (same order as exams.csv)."""
    return exam_plan(N_EXAMS, SEED, PARTS)


def csv_rows(root: Path) -> list[dict[str, str]]:
    """exams.csv as strings, read independently of the adapter."""
    with open(root / "exams.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_fixture_is_in_the_official_layout(root):
    with open(root / "exams.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == c15.COLUMNS
    with h5py.File(root / "exams_part0.hdf5", "r") as part:
        assert set(part) == {"tracings", "exam_id"}
        assert part["tracings"].shape[1:] == (SAMPLES, 12) and part["tracings"].dtype == np.float32
        assert part["exam_id"][-1] == 0  # the release's trailing filler row


def test_meta_reads_no_hdf5(tmp_path, monkeypatch):
    root = write_code15(tmp_path / "c", 12, 2, SEED)

    def refuse(*args, **kwargs):
        raise AssertionError("HDF5 opened")

    monkeypatch.setattr(h5py, "File", refuse)
    dataset = open_dataset(DatasetSpec("code15", {"path": str(root)}))
    metas = [dataset.meta(i) for i in range(len(dataset))]
    assert len(metas) == 12 and all(m.record_id.startswith("code15-") for m in metas)
    assert label_matrix(dataset, "coarse").shape == (12, len(COARSE_CLASSES))
    with pytest.raises(AssertionError, match="HDF5 opened"):  # the patch is live: load would read HDF5
        dataset.load(0)


def test_handles_are_opened_once_per_part(tmp_path, monkeypatch):
    root = write_code15(tmp_path / "c", 12, 3, SEED)
    opened = []
    real = h5py.File

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", counting)
    dataset = open_dataset(DatasetSpec("code15", {"path": str(root)}))
    for _ in range(2):
        for i in range(len(dataset)):
            dataset.load(i)
    reopened = open_dataset(dataset.spec)  # a Ray worker reopens the spec for every batch
    reopened.load(0)
    assert sorted(opened) == ["exams_part0.hdf5", "exams_part1.hdf5", "exams_part2.hdf5"]


def test_load_returns_what_was_written_in_mv(dataset, plan):
    for i, exam in enumerate(plan):
        record = dataset.load(i)
        assert record.record_id == f"code15-{exam['exam_id']}"
        assert record.sampling_rate_hz == 400.0 and record.units == "mV"
        assert record.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
        # stored = 2 x mV in float32; x 0.5 is exact, so the values match bit for bit
        np.testing.assert_array_equal(record.signal, signal_mv(exam, SEED))


def test_padding_is_stripped(root, dataset, plan):
    lengths = {7.0: 2800, 10.0: 4000}
    for i, exam in enumerate(plan):
        assert dataset.load(i).signal.shape == (12, lengths[exam["duration_s"]])
    seven = next(e for e in plan if e["duration_s"] == 7.0)
    with h5py.File(root / seven["trace_file"], "r") as part:
        row = list(part["exam_id"][:]).index(seven["exam_id"])
        stored = part["tracings"][row]
    assert not stored[:648].any() and not stored[-648:].any() and stored[648].any() and stored[-649].any()


def test_strip_zero_padding_keeps_interior_zeros():
    signal = np.zeros((12, 20), np.float32)
    signal[:, 3:16] = 1.0
    signal[:, 8] = 0.0  # an all-zero column inside the signal is data, not padding
    stripped = c15.strip_zero_padding(signal)
    assert stripped.shape == (12, 13) and not stripped[:, 5].any()
    assert c15.strip_zero_padding(np.zeros((12, 4))).shape == (12, 0)


def test_scale_parameter_changes_values_and_spec_key(root, dataset):
    raw = open_dataset(DatasetSpec("code15", {"path": str(root), "scale_to_mv": 1.0}))
    np.testing.assert_array_equal(raw.load(0).signal, dataset.load(0).signal * STORED_PER_MV)
    assert raw.spec.key != dataset.spec.key
    assert dataset.spec.params["scale_to_mv"] == c15.DEFAULT_SCALE_TO_MV == 0.5


def test_labels_follow_the_official_columns(root, dataset):
    assert dataset.tasks["code15"] == ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")
    assert dataset.tasks["coarse"] == COARSE_CLASSES
    assert dataset.multi_label == {"code15": True, "coarse": True}
    coarse = {"1dAVb": "1dAVb", "RBBB": "RBBB", "LBBB": "LBBB", "SB": "SB", "ST": "STach", "AF": "AF"}
    for i, row in enumerate(csv_rows(root)):
        meta = dataset.meta(i)
        official = {name for name in coarse if row[name] == "True"}
        assert set(meta.labels["code15"]) == official
        expected = {coarse[name] for name in official} | ({"NSR"} if row["normal_ecg"] == "True" else set())
        assert set(meta.labels["coarse"]) == expected
        assert meta.patient_id == f"code15-p{row['patient_id']}" and meta.source == "code15"
        assert meta.extra["age"] == int(row["age"]) and meta.extra["sex"] == ("M" if row["is_male"] == "True" else "F")
        assert meta.extra["region"] == "South America (Brazil)"
    y = label_matrix(dataset, "code15")
    assert y.shape == (N_EXAMS + 3, 6) and y.sum() > 0


def test_coarse_map_file():
    mapping = c15.read_coarse_map()
    assert mapping == {"1dAVb": "1dAVb", "RBBB": "RBBB", "LBBB": "LBBB", "SB": "SB", "ST": "STach", "AF": "AF",
                       "normal_ecg": "NSR"}
    text = c15.COARSE_MAP_FILE.read_text()
    assert text.startswith("#") and "4916206" in text
    assert "code15_label,coarse_class,note" in text


@pytest.mark.parametrize("exam_id, message", [
    (MISSING_PART_EXAM, r"^code15-9000001: trace_file exams_part2\.hdf5 not found in "),
    (ABSENT_EXAM, r"^code15-9000002: exam_id 9000002 is not in exams_part0\.hdf5$"),
    (ZERO_EXAM, r"^code15-9000003: empty tracing \(all 49152 values in exams_part0\.hdf5 row \d+ are zero\)$"),
])
def test_corrupt_rows_raise_record_error(dataset, exam_id, message):
    i = next(i for i in range(len(dataset)) if dataset.meta(i).extra["exam_id"] == exam_id)
    assert dataset.meta(i).labels["code15"] == ("AF",)  # meta stays available for a broken record
    with pytest.raises(RecordError, match=message):
        dataset.load(i)


def test_other_records_still_load_after_errors(dataset):
    for i in range(len(dataset)):
        if dataset.meta(i).extra["exam_id"] in CORRUPT_IDS:
            with pytest.raises(RecordError):
                dataset.load(i)
        else:
            assert dataset.load(i).signal.shape[0] == 12


def test_describe_counts(dataset, plan):
    quick = dataset.describe()
    assert quick["records"] == N_EXAMS + 3 and quick["kind"] == "code15"
    assert quick["patients"] == len({e["patient_id"] for e in plan}) + 1
    assert quick["sampling_rates_hz"] == {"400": N_EXAMS + 1}  # the all-zero exam is only found by a scan
    assert quick["durations_s"] is None and quick["signals_scanned"] is False
    assert quick["sources"] == {"code15": N_EXAMS + 3}
    assert [p["record"] for p in quick["problems"]] == ["code15-9000001", "code15-9000002"]
    expected = {name: sum(name in e["labels"] for e in plan) for name in c15.LABELS}
    expected["AF"] += 3
    assert quick["labels"]["code15"] == expected
    assert quick["labels"]["coarse"]["NSR"] == sum(e["normal_ecg"] for e in plan)
    assert quick["labels"]["coarse"]["STach"] == expected["ST"] and quick["labels"]["coarse"]["STE"] == 0
    full = dataset.describe(scan_signals=True)
    assert [p["record"] for p in full["problems"]] == ["code15-9000001", "code15-9000002", "code15-9000003"]
    assert all(p["level"] == "error" for p in full["problems"])
    sevens = sum(e["duration_s"] == 7.0 for e in plan)
    assert full["durations_s"]["counts"] == {"7.0": sevens, "10.0": N_EXAMS - sevens}
    assert full["sampling_rates_hz"] == {"400": N_EXAMS}


def test_duplicate_exam_ids_fail_every_copy(tmp_path, plan):
    root = write_code15(tmp_path / "c", 6, 1, SEED)
    lines = (root / "exams.csv").read_text().splitlines()
    (root / "exams.csv").write_text("\n".join(lines + [lines[2]]) + "\n")
    dataset = open_dataset(DatasetSpec("code15", {"path": str(root)}))
    assert len(dataset) == 7 and dataset.meta(1).record_id == dataset.meta(6).record_id
    for i in (1, 6):
        with pytest.raises(RecordError, match=r"listed more than once in exams\.csv \(lines 3, 8\)"):
            dataset.load(i)
    dataset.load(0)
    assert len(dataset.describe()["problems"]) == 2


def test_unreadable_part_is_a_record_error(tmp_path):
    root = write_code15(tmp_path / "c", 6, 2, SEED)
    (root / "exams_part1.hdf5").write_bytes(b"not hdf5")
    dataset = open_dataset(DatasetSpec("code15", {"path": str(root)}))
    with pytest.raises(RecordError, match=r"cannot open exams_part1\.hdf5"):
        dataset.load(5)
    dataset.load(0)


def test_bad_index_file_and_params(tmp_path):
    root = write_code15(tmp_path / "c", 4, 1, SEED)
    with pytest.raises(ValueError, match="unknown parameter"):
        open_dataset(DatasetSpec("code15", {"path": str(root), "sites": ["x"]}))
    with pytest.raises(ValueError, match="exams.csv"):
        open_dataset(DatasetSpec("code15", {"path": str(tmp_path)}))
    with pytest.raises(ValueError, match="scale_to_mv"):
        open_dataset(DatasetSpec("code15", {"path": str(root), "scale_to_mv": 0}))
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    text = (broken / "exams.csv").read_text()
    (broken / "exams.csv").write_text(re.sub(r",AF,", ",Afib,", text, count=1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['AF'\]"):
        open_dataset(DatasetSpec("code15", {"path": str(broken)}))


def test_registry_and_preprocessing(root):
    spec = parse_dataset_arg(f"code15:{root}")
    dataset = open_dataset(spec)
    wire = preprocess(dataset.load(0), PreprocessSpec(500.0, ("I", "II", "V1"), 5000))
    assert wire.shape == (3, 5000) and np.isfinite(wire).all()
    assert np.abs(wire).max() < 10.0  # mV, not stored units x 1000


def test_tolerant_spellings_and_missing_optional_columns(tmp_path):
    root = write_code15(tmp_path / "c", 3, 1, SEED)
    rows = csv_rows(root)
    columns = [c for c in c15.COLUMNS if c not in ("normal_ecg", "nn_predicted_age", "death", "timey")]
    with open(root / "exams.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            flags = {name: ("1" if row[name] == "True" else "0") for name in c15.LABELS}
            writer.writerow({**row, **flags, "patient_id": f"{row['patient_id']}.0", "age": "", "is_male": "true"})
    dataset = open_dataset(DatasetSpec("code15", {"path": str(root)}))
    for i, row in enumerate(rows):
        meta = dataset.meta(i)
        assert meta.patient_id == f"code15-p{row['patient_id']}"
        assert set(meta.labels["code15"]) == {n for n in c15.LABELS if row[n] == "True"}
        assert "NSR" not in meta.labels["coarse"]  # no normal_ecg column: no NSR
        assert meta.extra["age"] is None and meta.extra["sex"] == "M"
    dataset.load(0)
    text = (root / "exams.csv").read_text().splitlines()
    text[2] = text[2].replace(",true,", ",maybe,")
    (root / "exams.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"exams\.csv line 3: column is_male has 'maybe'"):
        open_dataset(DatasetSpec("code15", {"path": str(root)}))
