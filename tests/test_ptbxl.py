"""PTB-XL adapter: benchmark label aggregation, min_count, official folds, lazy metadata, WFDB loading, corruption."""
from __future__ import annotations

import ast
import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from orchestrator.datasets.base import COARSE_CLASSES, DatasetSpec, RecordError, label_matrix, open_dataset, \
    parse_dataset_arg
from orchestrator.datasets.ptbxl import COARSE_MAP, PtbxlDataset, aggregate, read_coarse_map, read_statements
from orchestrator.preprocess import CANONICAL_LEADS, PreprocessSpec, preprocess
from ptbxl_fixture import GAIN, LEADS, SCP_STATEMENTS_V103, corrupt_ptbxl, plan, record_signal, write_ptbxl

BENCHMARK_TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
HALF_STEP = 0.5 / GAIN + 1e-9  # fmt 16 rounds to the nearest adc unit


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A clean 40-record fixture, written once."""
    return write_ptbxl(tmp_path_factory.mktemp("ptbxl"))


def open_ptbxl(root: Path, **params) -> PtbxlDataset:
    """The adapter through the registry, as the orchestrator opens it."""
    return open_dataset(DatasetSpec("ptbxl", {"path": str(root), **params}))


def database(root: Path) -> list[dict]:
    """The fixture's ptbxl_database.csv rows."""
    with open(root / "ptbxl_database.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def benchmark_labels(root: Path) -> dict[str, list[set]]:
    """compute_label_aggregations of helme/ecg_ptbxl_benchmarking (code/utils/utils.py), ported line by line."""
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    df.scp_codes = df.scp_codes.apply(lambda x: ast.literal_eval(x))
    agg = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diag = agg[agg.diagnostic == 1.0]

    def pick(y_dic, table, column=None):
        out = []
        for key in y_dic.keys():
            if key in table.index:
                c = key if column is None else table.loc[key][column]
                if str(c) != "nan":
                    out.append(c)
        return set(out)

    return {
        "all": [set(x.keys()) for x in df.scp_codes],
        "diagnostic": [pick(x, diag) for x in df.scp_codes],
        "subdiagnostic": [pick(x, diag, "diagnostic_subclass") for x in df.scp_codes],
        "superdiagnostic": [pick(x, diag, "diagnostic_class") for x in df.scp_codes],
        "form": [pick(x, agg[agg.form == 1.0]) for x in df.scp_codes],
        "rhythm": [pick(x, agg[agg.rhythm == 1.0]) for x in df.scp_codes],
    }


def index_of(root: Path, code: str) -> int:
    """Index of the first record whose scp_codes holds `code`."""
    return next(i for i, row in enumerate(database(root)) if code in ast.literal_eval(row["scp_codes"]))


# ------------------------------------------------------------------------------------------- statements and labels


def test_statement_table_is_the_published_one(root):
    """71 statements: 44 diagnostic (23 subclasses, 5 classes), 19 form, 12 rhythm, as in the PTB-XL paper."""
    table = read_statements(root / "scp_statements.csv")
    diagnostic = [s for s in table.values() if s.diagnostic]
    assert len(table) == 71 and len(diagnostic) == 44
    assert sum(s.form for s in table.values()) == 19 and sum(s.rhythm for s in table.values()) == 12
    assert len({s.diagnostic_subclass for s in diagnostic}) == 23
    assert {s.diagnostic_class for s in diagnostic} == {"NORM", "MI", "STTC", "CD", "HYP"}
    assert (table["IMI"].diagnostic_class, table["IMI"].diagnostic_subclass) == ("MI", "IMI")
    assert (table["NORM"].diagnostic_class, table["NORM"].diagnostic_subclass) == ("NORM", "NORM")
    assert (table["INJAS"].diagnostic_class, table["INJAS"].diagnostic_subclass) == ("MI", "AMI")
    assert (table["1AVB"].diagnostic_class, table["1AVB"].diagnostic_subclass) == ("CD", "_AVB")
    assert table["NDT"].diagnostic and table["NDT"].form and not table["NDT"].rhythm
    assert table["SR"].rhythm and not table["SR"].diagnostic and not table["SR"].form
    assert table["PVC"].form and not table["PVC"].diagnostic


def test_labels_match_the_benchmark_aggregation(root):
    """With min_count=1 every record's labels equal compute_label_aggregations' for all six benchmark tasks."""
    ds = open_ptbxl(root, min_count=1)
    reference = benchmark_labels(root)
    for task in BENCHMARK_TASKS:
        assert set(ds.tasks[task]) == set().union(*reference[task])
        assert ds.tasks[task] == tuple(sorted(ds.tasks[task]))  # MultiLabelBinarizer order
        for i in range(len(ds)):
            assert set(ds.meta(i).labels[task]) == reference[task][i], (task, i)
    assert all(ds.multi_label[t] for t in ds.tasks)


def test_published_rows_aggregate_as_expected(root):
    """IMI -> MI/IMI, NORM -> NORM, likelihoods (0.0, 15.0) are not thresholded, rhythm holds SR and AFIB."""
    ds = open_ptbxl(root, min_count=1)
    imi = ds.meta(index_of(root, "IMI")).labels
    assert "IMI" in imi["diagnostic"] and "IMI" in imi["subdiagnostic"] and "MI" in imi["superdiagnostic"]
    norm = ds.meta(index_of(root, "NORM")).labels
    assert "NORM" in norm["superdiagnostic"] and "NORM" in norm["subdiagnostic"]
    lmi = ds.meta(index_of(root, "LMI")).labels  # {'LMI': 15.0, 'ABQRS': 0.0, 'SR': 0.0}
    assert lmi["diagnostic"] == ("LMI",) and lmi["form"] == ("ABQRS",) and lmi["rhythm"] == ("SR",)
    assert {"SR", "AFIB"} <= set(ds.tasks["rhythm"])
    ndt = ds.meta(index_of(root, "NDT")).labels  # diagnostic and form at once
    assert "NDT" in ndt["diagnostic"] and "NDT" in ndt["form"] and "STTC" in ndt["superdiagnostic"]


def test_min_count_drops_rare_classes_but_keeps_records(root):
    """Classes under min_count leave the task; records stay, with an empty tuple when nothing is left."""
    full = open_ptbxl(root, min_count=1)
    ds = open_ptbxl(root, min_count=3)
    assert len(ds) == len(full) == 40
    for task, classes in full.tasks.items():
        counts = label_matrix(full, task).sum(axis=0)
        kept = {c for c, n in zip(classes, counts) if n >= 3}
        assert set(ds.tasks.get(task, ())) == kept
        assert ds.describe(headers=0)["dropped_classes"].get(task, {}) == {c: int(n) for c, n in zip(classes, counts)
                                                                           if n < 3}
        for i in range(len(ds)):
            assert set(ds.meta(i).labels.get(task, ())) == set(full.meta(i).labels[task]) & kept
    assert "SARRH" not in ds.tasks["rhythm"] and "ISC_" not in ds.tasks["diagnostic"]
    assert any(not ds.meta(i).labels["form"] for i in range(len(ds)))
    assert "form" not in open_ptbxl(root, min_count=9).tasks  # no form statement reaches 9 records: task gone


def test_default_min_count_is_ten(root):
    """The benchmark-sized default keeps only classes with at least ten records."""
    ds = open_ptbxl(root)
    assert ds.spec.params["min_count"] == 10
    counts = ds.describe(headers=0)["label_counts"]
    assert counts and all(n >= 10 for classes in counts.values() for n in classes.values())


# ------------------------------------------------------------------------------------------- split and metadata


def test_official_split_follows_strat_fold(root):
    """Folds 1-8 train, 9 validation, 10 test; disjoint, complete, and no patient on two sides."""
    ds = open_ptbxl(root)
    split = ds.official_split()
    folds = [int(row["strat_fold"]) for row in database(root)]
    assert split["train"] == [i for i, f in enumerate(folds) if f <= 8]
    assert split["validation"] == [i for i, f in enumerate(folds) if f == 9]
    assert split["test"] == [i for i, f in enumerate(folds) if f == 10]
    assert split["validation"] and split["test"]
    assert sorted(split["train"] + split["validation"] + split["test"]) == list(range(len(ds)))
    patients = {part: {ds.meta(i).patient_id for i in idx} for part, idx in split.items()}
    assert not patients["train"] & patients["test"] and not patients["validation"] & patients["test"]
    custom = open_ptbxl(root, folds={"train": [1, 2, 3], "test": [4]}).official_split()
    assert set(custom) == {"train", "test"} and custom["test"] == [i for i, f in enumerate(folds) if f == 4]


def test_meta_reads_no_files(root, tmp_path, monkeypatch):
    """meta() works from the CSVs read at start-up: no open(), no WFDB call, not even the records folders."""
    copy = shutil.copytree(root, tmp_path / "copy")
    ds = open_ptbxl(copy)
    shutil.rmtree(copy / "records500")
    shutil.rmtree(copy / "records100")

    def boom(*args, **kwargs):
        raise AssertionError("meta() touched a file")

    for target in ("builtins.open", "wfdb.rdrecord", "wfdb.rdheader", "wfdb.rdsamp"):
        monkeypatch.setattr(target, boom)
    metas = [ds.meta(i) for i in range(len(ds))]
    monkeypatch.undo()
    rows = database(root)
    assert [m.record_id for m in metas] == [f"ptbxl-{row['ecg_id']}" for row in rows]
    assert [m.patient_id for m in metas] == [f"ptbxl-p{int(float(row['patient_id']))}" for row in rows]
    assert {m.source for m in metas} == {"ptbxl"}
    assert set(metas[0].extra) == {"age", "sex", "strat_fold", "site", "device", "region"}
    assert metas[0].extra["region"] == "Europe (Germany)"


def test_meta_extra_decodes_demographics(root):
    """sex 0/1 -> M/F, PTB-XL's age 300 (90 or older) -> 90, empty age -> None, site/fold as ints."""
    ds = open_ptbxl(root)
    for row, meta in zip(database(root), (ds.meta(i) for i in range(len(ds)))):
        assert meta.extra["sex"] == {"0": "M", "1": "F"}[row["sex"]]
        assert meta.extra["age"] == {"300.0": 90.0, "": None}.get(row["age"], float(row["age"] or 0))
        assert meta.extra["strat_fold"] == int(row["strat_fold"]) and meta.extra["site"] == int(float(row["site"]))
        assert meta.extra["device"] == row["device"]
    assert any(m.extra["age"] == 90.0 for m in map(ds.meta, range(len(ds))))
    assert any(m.extra["age"] is None for m in map(ds.meta, range(len(ds))))


# ------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("rate,samples", [(500, 5000), (100, 1000)])
def test_load_returns_written_signal(root, rate, samples):
    """[12, T] in mV at the header's rate and lead names, equal to what was written within half a storage step."""
    ds = open_ptbxl(root, sampling_rate=rate)
    assert ds.name == f"ptbxl[{rate}Hz]"
    for i, row in enumerate(plan(40, 0)):
        record = ds.load(i)
        assert record.record_id == f"ptbxl-{row['ecg_id']}" and record.units == "mV"
        assert record.signal.shape == (12, samples) and record.sampling_rate_hz == rate
        assert record.leads == LEADS
        written = record_signal(int(row["ecg_id"]), row["_condition"], 0, rate)
        assert np.abs(record.signal - written).max() <= HALF_STEP


def test_loaded_record_passes_preprocessing(root):
    """PTB-XL's AVR/AVL/AVF spellings map onto the canonical leads."""
    ds = open_ptbxl(root, sampling_rate=100)
    wire = preprocess(ds.load(0), PreprocessSpec(500.0, CANONICAL_LEADS, 5000))
    assert wire.shape == (12, 5000) and np.isfinite(wire).all()


def test_microvolt_headers_are_converted(root, tmp_path):
    """A record stored in uV is returned in mV."""
    copy = shutil.copytree(root, tmp_path / "copy")
    base = copy / database(root)[0]["filename_hr"]
    original = wfdb.rdrecord(str(base)).p_signal
    wfdb.wrsamp(base.name, fs=500, units=["uV"] * 12, sig_name=list(LEADS), p_signal=original * 1000.0,
                fmt=["16"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(base.parent))
    record = open_ptbxl(copy).load(0)
    assert record.units == "mV" and np.abs(record.signal - original.T).max() <= HALF_STEP


CORRUPT = {"truncated_dat": [3], "missing_hea": [5], "missing_dat": [7], "n_samples": [9], "invalid_sample": [11]}
EXPECTED = {3: (".dat", "truncated"), 5: (".hea", "missing"), 7: (".dat", "missing"), 9: (".dat", "n_samples"),
            11: (".dat", "NaN")}


@pytest.fixture(scope="module")
def broken(root, tmp_path_factory) -> Path:
    """The fixture with one record damaged in each supported way (both rates); a copy, as wrsamp is slow."""
    return corrupt_ptbxl(shutil.copytree(root, tmp_path_factory.mktemp("ptbxl-broken") / "ptbxl"), CORRUPT)


def test_fixture_writer_applies_corruptions(tmp_path):
    """write_ptbxl(corrupt=...) damages the named records at both rates and refuses unknown kinds."""
    out = write_ptbxl(tmp_path / "small", n_records=3, corrupt={"missing_hea": [2]})
    assert not (out / "records500/00000/00002_hr.hea").exists() and not (out / "records100/00000/00002_lr.hea").exists()
    assert (out / "records500/00000/00001_hr.hea").exists()
    with pytest.raises(ValueError, match="unknown corruption"):
        write_ptbxl(tmp_path / "other", n_records=1, corrupt={"melted": [1]})


@pytest.mark.parametrize("rate", [500, 100])
def test_corrupt_records_raise_record_error_naming_the_file(broken, rate):
    """Each damaged record raises RecordError naming its file; every other record still loads."""
    ds = open_ptbxl(broken, sampling_rate=rate)
    suffix = "_hr" if rate == 500 else "_lr"
    for i in range(len(ds)):
        ecg_id = i + 1
        if ecg_id in EXPECTED:
            with pytest.raises(RecordError) as err:
                ds.load(i)
            extension, reason = EXPECTED[ecg_id]
            message = str(err.value)
            assert f"{ecg_id:05d}{suffix}{extension}" in message and reason in message, message
            assert message.startswith(f"ptbxl-{ecg_id}: ")
        else:
            assert ds.load(i).signal.shape[0] == 12
        assert ds.meta(i).record_id == f"ptbxl-{ecg_id}"  # metadata unaffected


def test_header_shorter_than_data_is_caught(root, tmp_path):
    """wfdb silently reads a short header's worth of samples; the size check refuses the record."""
    copy = shutil.copytree(root, tmp_path / "copy")
    hea = copy / (database(root)[0]["filename_hr"] + ".hea")
    hea.write_text(hea.read_text().replace(" 500 5000\n", " 500 4000\n", 1))
    with pytest.raises(RecordError, match=r"00001_hr\.dat holds 120000 bytes .* 96000 bytes.*n_samples"):
        open_ptbxl(copy).load(0)


def test_describe_reports_broken_records(broken):
    """describe(): missing files from existence checks, size mismatches from the headers it reads."""
    info = open_ptbxl(broken).describe(headers=None)
    assert info["problem_counts"] == {"missing_file": 2, "bad_record": 2}
    text = " ".join(p["problem"] for p in info["problems"])
    for ecg_id in (3, 5, 7, 9):
        assert f"{ecg_id:05d}_hr" in text
    assert info["headers_read"] == 40 - 4  # missing .hea or .dat, truncated .dat and wrong n_samples: unread


# ------------------------------------------------------------------------------------------- coarse mapping


def test_coarse_map_file_is_sound():
    """Every mapped code is a PTB-XL statement, every class a COARSE_CLASS, and each class has a source."""
    text = COARSE_MAP.read_text(encoding="utf-8")
    assert text.startswith("#") and "v1.0.3 scp_statements.csv" in text.splitlines()[1]
    codes = {line.split(",")[0] for line in SCP_STATEMENTS_V103.splitlines()[1:]}
    with open(COARSE_MAP, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert rows and all(r["scp_code"] in codes and r["note"] for r in rows)
    mapping = read_coarse_map()
    assert set(mapping.values()) == set(COARSE_CLASSES)
    assert mapping == {"SR": "NSR", "AFIB": "AF", "AFLT": "AF", "SBRAD": "SB", "STACH": "STach", "1AVB": "1dAVb",
                       "CRBBB": "RBBB", "CLBBB": "LBBB", "STE_": "STE"}


@pytest.mark.parametrize("codes,expected", [
    ({"NORM", "SR"}, {"NSR"}), ({"AFIB"}, {"AF"}), ({"AFLT", "AFIB"}, {"AF"}), ({"AFLT"}, {"AF"}),
    ({"SBRAD"}, {"SB"}), ({"STACH"}, {"STach"}), ({"SVTAC"}, set()), ({"SARRH"}, set()),
    ({"1AVB", "SR"}, {"1dAVb", "NSR"}), ({"LPR"}, set()), ({"CRBBB"}, {"RBBB"}), ({"IRBBB"}, set()),
    ({"CLBBB"}, {"LBBB"}), ({"ILBBB"}, set()), ({"STE_"}, {"STE"}), ({"INJAS", "INJIN"}, set()), ({"NORM"}, set()),
])
def test_coarse_aggregation(root, codes, expected):
    """The coarse task maps statements one by one through the shipped table."""
    labels = aggregate(codes, read_statements(root / "scp_statements.csv"), read_coarse_map())
    assert labels["coarse"] == expected


def test_coarse_task_on_the_fixture(root):
    """Coarse classes keep COARSE_CLASSES order; records get them from their statements."""
    ds = open_ptbxl(root, min_count=1)
    assert ds.tasks["coarse"] == COARSE_CLASSES
    assert ds.meta(index_of(root, "CLBBB")).labels["coarse"] == ("NSR", "1dAVb", "LBBB")
    assert "RBBB" not in ds.meta(index_of(root, "IRBBB")).labels["coarse"]
    assert ds.meta(index_of(root, "INJAS")).labels["coarse"] == ("NSR",)


# ------------------------------------------------------------------------------------------- describe and params


def test_describe_counts(root):
    """Records, patients, rates, lengths, leads and label counts agree with the data and label_matrix."""
    ds = open_ptbxl(root, min_count=1)
    info = ds.describe()
    rows = database(root)
    assert info["records"] == 40 and info["sources"] == {"ptbxl": 40}
    assert info["patients"] == len({row["patient_id"] for row in rows})
    assert info["sampling_rates_hz"] == [500.0] and info["lengths_s"] == {"min": 10.0, "median": 10.0, "max": 10.0}
    assert info["leads"] == list(LEADS) and info["problems"] == [] and info["problem_counts"] == {}
    assert info["split"] == {part: len(idx) for part, idx in ds.official_split().items()}
    for task, classes in ds.tasks.items():
        sums = label_matrix(ds, task).sum(axis=0)
        assert info["label_counts"][task] == {c: int(n) for c, n in zip(classes, sums)}
        assert info["unlabelled"][task] == int((label_matrix(ds, task).sum(axis=1) == 0).sum())
    assert info["label_counts"]["rhythm"]["SR"] == sum("'SR'" in row["scp_codes"] for row in rows)


def test_bad_database_rows_are_reported_not_fatal(root, tmp_path):
    """An unreadable scp_codes or a missing patient_id costs that row its labels or patient, not the dataset."""
    copy = shutil.copytree(root, tmp_path / "copy")
    rows = database(copy)
    rows[0]["scp_codes"] = "{'NORM': 100.0"
    rows[1]["patient_id"] = ""
    rows[2]["scp_codes"] = "{'XYZ': 100.0, 'SR': 0.0}"
    with open(copy / "ptbxl_database.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    ds = open_ptbxl(copy, min_count=1)
    assert len(ds) == 40 and all(not labels for labels in ds.meta(0).labels.values())
    assert ds.meta(1).patient_id == "ptbxl-e2"
    assert "XYZ" in ds.meta(2).labels["all"] and "XYZ" not in ds.meta(2).labels["diagnostic"]
    info = ds.describe(headers=0)
    assert info["problem_counts"] == {"bad_row": 2, "unknown_statement": 1}


@pytest.mark.parametrize("params,message", [
    ({"colour": 1}, "unknown parameter"), ({"sampling_rate": 250}, "sampling_rate"),
    ({"min_count": 0}, "min_count"), ({"folds": {"train": [1, 2], "test": [2]}}, "two parts"),
    ({"folds": {"train": [1]}}, "folds"), ({"folds": {"train": [0], "test": [10]}}, "1..10"),
])
def test_bad_params_are_refused(root, params, message):
    """Parameter mistakes are ValueErrors naming the parameter."""
    with pytest.raises(ValueError, match=message):
        open_ptbxl(root, **params)


def test_wrong_folder_is_refused(tmp_path):
    """A folder without PTB-XL's CSVs says what it expected."""
    with pytest.raises(ValueError, match="ptbxl_database.csv"):
        open_ptbxl(tmp_path)
    with pytest.raises(ValueError, match="path"):
        open_dataset(DatasetSpec("ptbxl", {}))


def test_registry_spec_roundtrip(root):
    """`ptbxl:PATH` opens the adapter; its normalised spec reopens the same dataset in another process."""
    ds = open_dataset(parse_dataset_arg(f"ptbxl:{root}"))
    assert isinstance(ds, PtbxlDataset)
    assert ds.spec.params == {"path": str(root.resolve()), "sampling_rate": 500, "min_count": 10,
                              "folds": {"train": [1, 2, 3, 4, 5, 6, 7, 8], "validation": [9], "test": [10]}}
    again = open_dataset(pickle.loads(pickle.dumps(ds.spec)))
    assert again.spec.key == ds.spec.key and again.tasks == ds.tasks
    assert [again.meta(i) for i in range(len(again))] == [ds.meta(i) for i in range(len(ds))]
