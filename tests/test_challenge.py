"""The PhysioNet/CinC Challenge 2020/2021 adapter on a written fixture in the official file format."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.io import loadmat, savemat

from orchestrator.datasets import challenge as ch
from orchestrator.datasets.base import (COARSE_CLASSES, DatasetSpec, RecordError, label_matrix, open_dataset,
                                        parse_dataset_arg)
from challenge_fixture import (CORRUPT, GAIN, SOURCE_LAYOUT, UNKNOWN_CODE, fixture_signal, header_text, plan,
                                     quantise, record_folder, write_challenge)

# The A0001.hea example of the Challenge 2020 description (physionetchallenges.github.io/2020), verbatim.
OFFICIAL_A0001 = """A0001 12 500 7500 05-Feb-2020 11:39:16
A0001.mat 16+24 1000/mV 16 0 28 -1716 0 I
A0001.mat 16+24 1000/mV 16 0 7 2029 0 II
A0001.mat 16+24 1000/mV 16 0 -21 3745 0 III
A0001.mat 16+24 1000/mV 16 0 -17 3680 0 aVR
A0001.mat 16+24 1000/mV 16 0 24 -2664 0 aVL
A0001.mat 16+24 1000/mV 16 0 -7 -1499 0 aVF
A0001.mat 16+24 1000/mV 16 0 -290 390 0 V1
A0001.mat 16+24 1000/mV 16 0 -204 157 0 V2
A0001.mat 16+24 1000/mV 16 0 -96 -2555 0 V3
A0001.mat 16+24 1000/mV 16 0 -112 49 0 V4
A0001.mat 16+24 1000/mV 16 0 -596 -321 0 V5
A0001.mat 16+24 1000/mV 16 0 -16 -3112 0 V6
#Age: 74
#Sex: Male
#Dx: 426783006
#Rx: Unknown
#Hx: Unknown
#Sx: Unknown
"""

# Column order of weights_abbreviations.csv, physionetchallenges/evaluation-2021 @ ef74b668 (the 26 scored classes).
OFFICIAL_SCORED = ("AF", "AFL", "BBB", "Brady", "CLBBB|LBBB", "CRBBB|RBBB", "IAVB", "IRBBB", "LAD", "LAnFB", "LPR",
                   "LQRSV", "LQT", "NSIVCB", "NSR", "PAC|SVPB", "PR", "PRWP", "PVC|VPB", "QAb", "RAD", "SA", "SB",
                   "STach", "TAb", "TInv")

# Expected coarse class per code, written out independently of labels/snomed_coarse.csv.
COARSE_OF = {"426783006": "NSR", "164889003": "AF", "164890007": "AF", "426177001": "SB", "427084000": "STach",
             "270492004": "1dAVb", "59118001": "RBBB", "713427006": "RBBB", "164909002": "LBBB", "733534002": "LBBB",
             "164931005": "STE"}

EXPECTED_SOURCE = {"A": "cpsc2018", "Q": "cpsc_extra", "I": "incart", "S": "ptb", "HR": "ptbxl", "E": "georgia",
                   "JS": "chapman_ningbo"}


def _open(root: Path) -> ch.ChallengeDataset:
    """The adapter over a folder."""
    return ch.ChallengeDataset(DatasetSpec("challenge", {"path": str(root)}))


def _index(ds: ch.ChallengeDataset) -> dict[str, int]:
    """Record name -> index."""
    return {ds.meta(i).record_id.split("-", 1)[1]: i for i in range(len(ds))}


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    """The default fixture: 13 records from all seven sources in the Challenge 2021 folder layout."""
    return write_challenge(tmp_path_factory.mktemp("challenge"))


@pytest.fixture(scope="module")
def corrupt_root(tmp_path_factory) -> Path:
    """The default fixture plus the broken records of CORRUPT."""
    return write_challenge(tmp_path_factory.mktemp("challenge-corrupt"), corrupt=True)


# --------------------------------------------------------------------------------------------------- headers


def test_parses_the_official_example_header():
    h = ch.parse_header(OFFICIAL_A0001)
    assert (h.record_name, h.sampling_rate_hz, h.num_samples, h.signal_file) == ("A0001", 500.0, 7500, "A0001.mat")
    assert h.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert set(h.gains) == {1000.0} and set(h.baselines) == {0} and set(h.units) == {"mV"}
    assert (h.age, h.sex, h.dx) == (74, "M", ("426783006",))


def test_multiple_dx_codes_and_nan_age():
    text = OFFICIAL_A0001.replace("#Dx: 426783006", "#Dx: 426783006,164889003, 59118001")
    text = text.replace("#Age: 74", "#Age: NaN")
    h = ch.parse_header(text.replace("#Sex: Male", "#Sex: Female"))
    assert h.dx == ("426783006", "164889003", "59118001")
    assert h.age is None and h.sex == "F"
    assert ch.parse_age("Unknown") is None and ch.parse_age("56") == 56 and ch.parse_age("-1") is None


def test_gain_baseline_and_units_variants():
    text = OFFICIAL_A0001.replace("16+24 1000/mV 16 0 28", "16+24 500(12)/uV 16 0 28", 1)
    h = ch.parse_header(text)
    assert (h.gains[0], h.baselines[0], h.units[0]) == (500.0, 12, "uV")
    assert (h.gains[1], h.baselines[1], h.units[1]) == (1000.0, 0, "mV")
    signal = ch.to_millivolts(np.full((12, 3), 512, np.int16), h)
    assert signal[0, 0] == pytest.approx((512 - 12) / 500 * 1e-3) and signal[1, 0] == pytest.approx(0.512)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("#Age: 74\n#Dx: 426783006\n", "empty"),
    ("A0001 twelve 500 7500\n", "not `name signals rate samples`"),
    ("A0001 12 500\n", "lacks"),
    ("\n".join(OFFICIAL_A0001.splitlines()[:6]), "declares 12 signals but has 5"),
    (OFFICIAL_A0001.replace("A0001 12 500 7500 05-Feb-2020 11:39:16\n", "A0001 12 500 7500 05-Feb-2020 11:39:16 ", 1),
     "declares 12 signals but has 11"),
    (OFFICIAL_A0001.replace("A0001.mat 16+24 1000/mV 16 0 7 ", "B0001.mat 16+24 1000/mV 16 0 7 "), "several files"),
    (OFFICIAL_A0001.replace("16+24 1000/mV", "16+24 high/mV", 1), "gain"),
])
def test_corrupt_header_text_is_rejected(text, reason):
    with pytest.raises(ch.HeaderError, match=reason.replace("(", r"\(")):
        ch.parse_header(text)


# --------------------------------------------------------------------------------------------------- sources


def test_source_prefixes():
    for name, source in [("A0001", "cpsc2018"), ("Q3581", "cpsc_extra"), ("I0075", "incart"), ("S0549", "ptb"),
                         ("HR21837", "ptbxl"), ("E10344", "georgia"), ("JS45551", "chapman_ningbo")]:
        assert ch.source_of(name).id == source
    assert ch.source_of("X0001").id == "unknown" and ch.source_of("A0001b").id == "unknown"
    assert ch.source_of("S0001").region == "Europe" and ch.source_of("E00001").country == "USA"


def test_sources_recognised_in_one_mixed_folder(clean_root):
    ds = _open(clean_root)
    planned = plan()
    assert len(ds) == len(planned) == 13
    by_name = _index(ds)
    for rec in planned:
        meta = ds.meta(by_name[rec.name])
        prefix = SOURCE_LAYOUT[rec.source][0]
        assert meta.source == EXPECTED_SOURCE[prefix] == rec.source
        assert meta.record_id == meta.patient_id == f"{rec.source}-{rec.name}"
        assert meta.extra["region"] == ch.SOURCES[prefix].region and meta.extra["country"] == ch.SOURCES[prefix].country
        assert meta.extra["age"] == ch.parse_age(rec.age) and meta.extra["sex"] == ch.parse_sex(rec.sex)
        assert meta.extra["dx"] == rec.dx
    assert {ds.meta(i).source for i in range(len(ds))} == set(EXPECTED_SOURCE.values())
    assert any(ds.meta(i).extra["age"] is None for i in range(len(ds)))  # "#Age: NaN" records


def test_flat_folder_gives_the_same_records(clean_root, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in (clean_root / "training").rglob("*.*"):
        shutil.copy(path, flat / path.name)
    nested, ds = _open(clean_root), _open(flat)
    ids = sorted(ds.meta(i).record_id for i in range(len(ds)))
    assert ids == sorted(nested.meta(i).record_id for i in range(len(nested)))
    i = _index(ds)["HR00001"]
    assert np.array_equal(ds.load(i).signal, nested.load(_index(nested)["HR00001"]).signal)


# --------------------------------------------------------------------------------------------------- label tables


def test_scored_table_matches_the_published_rows():
    tables = ch.label_tables()
    assert len(tables.scored) == 30 and tables.scored_classes == OFFICIAL_SCORED
    known = {"164889003": "AF", "164890007": "AFL", "426783006": "NSR", "270492004": "IAVB", "426177001": "SB",
             "427084000": "STach", "6374002": "BBB", "10370003": "PR", "59931005": "TInv"}
    assert {c: tables.scored[c] for c in known} == known
    for pair, merged in [(("713427006", "59118001"), "CRBBB|RBBB"), (("733534002", "164909002"), "CLBBB|LBBB"),
                         (("284470004", "63593006"), "PAC|SVPB"), (("427172004", "17338001"), "PVC|VPB")]:
        assert tables.scored[pair[0]] == tables.scored[pair[1]] == merged
    text = (ch.LABELS_DIR / "challenge2021_scored.csv").read_text()
    assert text.startswith("#") and "physionetchallenges/evaluation-2021" in text.splitlines()[0]
    assert "atrial fibrillation,164889003,AF,AF" in text.splitlines()


def test_coarse_table():
    tables = ch.label_tables()
    assert {c: tables.coarse[c] for c in COARSE_OF} == COARSE_OF
    assert set(tables.coarse.values()) == set(COARSE_CLASSES)
    assert "164947007" not in tables.coarse and "713426002" not in tables.coarse  # LPR, incomplete RBBB: not coarse
    assert set(tables.coarse) <= tables.known and "164865005" in tables.known  # unscored MI is known


def test_equivalent_codes_give_the_same_class(clean_root):
    ds = _open(clean_root)
    assert ds.tasks == {"scored": OFFICIAL_SCORED, "coarse": COARSE_CLASSES}
    assert ds.multi_label == {"scored": True, "coarse": True}
    metas = [ds.meta(i) for i in range(len(ds))]
    for codes, scored, coarse in [(("59118001", "713427006"), "CRBBB|RBBB", "RBBB"),
                                  (("164909002", "733534002"), "CLBBB|LBBB", "LBBB"),
                                  (("284470004", "63593006"), "PAC|SVPB", None)]:
        for code in codes:
            carriers = [m for m in metas if code in m.extra["dx"]]
            assert carriers, f"fixture lacks {code}"
            assert all(scored in m.labels["scored"] for m in carriers)
            assert coarse is None or all(coarse in m.labels["coarse"] for m in carriers)


def test_labels_per_record(clean_root):
    ds = _open(clean_root)
    tables = ch.label_tables()
    by_name = _index(ds)
    for rec in plan():
        labels = ds.meta(by_name[rec.name]).labels
        assert set(labels["coarse"]) == {COARSE_OF[c] for c in rec.dx if c in COARSE_OF}
        assert set(labels["scored"]) == {tables.scored[c] for c in rec.dx if c in tables.scored}
    # ST elevation is coarse-only; the unscored MI code gives no label at all
    ste = next(r for r in plan() if "164931005" in r.dx)
    assert ds.meta(by_name[ste.name]).labels == {"scored": ("NSR",), "coarse": ("NSR", "STE")}
    y = label_matrix(ds, "coarse")
    assert y.shape == (13, len(COARSE_CLASSES)) and y.sum() == sum(len(ds.meta(i).labels["coarse"]) for i in range(13))


# --------------------------------------------------------------------------------------------------- signals


def test_load_equals_what_was_written(clean_root):
    ds = _open(clean_root)
    by_name = _index(ds)
    for rec in plan():
        i = by_name[rec.name]
        record = ds.load(i)
        folder = record_folder(clean_root, rec.folder)
        val = loadmat(str(folder / f"{rec.name}.mat"))["val"]
        assert record.record_id == ds.meta(i).record_id and record.units == "mV"
        assert record.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
        assert record.signal.shape == (12, round(rec.seconds * rec.rate)) == val.shape
        assert np.allclose(record.signal, val / GAIN, atol=1e-6, rtol=0)
        assert np.abs(record.signal - fixture_signal(rec)).max() <= 1 / GAIN
        # the files are genuine WFDB: wfdb reads the same millivolts through the header's 16+24 format
        ref = wfdb.rdrecord(str(folder / rec.name))
        assert ref.fs == rec.rate and ref.sig_name == list(record.leads)
        assert np.allclose(ref.p_signal.T, record.signal, atol=1e-6)


def test_rates_and_durations_per_source(clean_root):
    ds = _open(clean_root)
    rates = {"cpsc2018": 500, "cpsc_extra": 500, "incart": 257, "ptb": 1000, "ptbxl": 500, "georgia": 500,
             "chapman_ningbo": 500}
    for i in range(len(ds)):
        meta = ds.meta(i)
        assert meta.extra["sampling_rate_hz"] == rates[meta.source]
    incart = _index(ds)["I0001"]
    record = ds.load(incart)
    assert record.sampling_rate_hz == 257.0 and record.signal.shape[1] == 60 * 257


def test_nan_samples_are_a_record_error(tmp_path):
    rec = plan({"ptbxl": 1})[0]
    val = quantise(fixture_signal(rec)).astype(np.float64)
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "HR00001.hea").write_text(header_text("HR00001", val.astype(np.int16), rec.rate, rec.dx, "50", "Male"))
    val[3, 100] = np.nan
    savemat(str(folder / "HR00001.mat"), {"val": val}, format="4")
    with pytest.raises(RecordError, match=r"HR00001\.mat: 1 NaN"):
        _open(folder).load(0)


# --------------------------------------------------------------------------------------------------- failures


def test_corrupt_records_fail_alone_and_name_their_file(corrupt_root):
    ds = _open(corrupt_root)
    assert len(ds) == 13 + len(CORRUPT)
    by_name = _index(ds)
    for name, (source, what, file) in CORRUPT.items():
        meta = ds.meta(by_name[name])  # never raises: the runner lists every meta
        assert meta.source == source
        if not file:
            assert ds.load(by_name[name]).signal.shape[0] == 12, what
            continue
        with pytest.raises(RecordError) as err:
            ds.load(by_name[name])
        assert file in str(err.value) and str(err.value).startswith(meta.record_id), what
    for rec in plan():
        assert ds.load(by_name[rec.name]).signal.shape[0] == 12
    assert "holds 11 leads" in _error(ds, by_name["JS09007"]) and "missing" in _error(ds, by_name["Q9004"])
    assert "header declares" in _error(ds, by_name["E09002"]) and "corrupt header" in _error(ds, by_name["S9005"])
    assert ds.meta(by_name["S9005"]).labels == {"scored": (), "coarse": ()}
    assert "no header" in ds.meta(by_name["I9006"]).extra["problem"]


def _error(ds: ch.ChallengeDataset, i: int) -> str:
    """The RecordError text of load(i)."""
    with pytest.raises(RecordError) as err:
        ds.load(i)
    return str(err.value)


def test_unknown_codes_are_reported_not_fatal(corrupt_root):
    ds = _open(corrupt_root)
    i = _index(ds)["HR09003"]
    assert ds.meta(i).labels == {"scored": ("NSR",), "coarse": ("NSR",)} and UNKNOWN_CODE in ds.meta(i).extra["dx"]
    info = ds.describe()
    assert info["unknown_codes"] == {UNKNOWN_CODE: 1}
    assert {"record": "", "problem": f"unknown SNOMED code {UNKNOWN_CODE} in 1 record(s)",
            "level": "warning"} in info["problems"]
    assert info["unmapped_codes"] == {"164865005": 1}  # unscored MI: known to the Challenge, so not "unknown"
    problems = {p["record"]: p["problem"] for p in info["problems"] if p["level"] == "error"}
    assert problems.keys() == {"ptb-S9005", "incart-I9006", "cpsc_extra-Q9004"}  # the rest needs the .mat read
    assert "S9005.hea: corrupt header" in problems["ptb-S9005"] and "I9006.hea: no header" in problems["incart-I9006"]
    assert "Q9004.mat: signal file is missing" in problems["cpsc_extra-Q9004"]


def test_describe(clean_root):
    info = _open(clean_root).describe()
    assert info["records"] == info["patients"] == 13 and info["sources"] == {"cpsc2018": 3, "cpsc_extra": 2, "incart": 1, "ptb": 1,
                                                         "ptbxl": 2, "georgia": 2, "chapman_ningbo": 2}
    assert info["sampling_rates_hz"] == {"257": 1, "500": 11, "1000": 1}
    assert info["durations_s"] == {"min": 10.0, "median": 10.0, "max": 60.0}
    assert info["leads"] == {"I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6": 13}
    assert info["labels"]["coarse"]["RBBB"] == 2 and info["labels"]["scored"]["CRBBB|RBBB"] == 2
    assert info["unknown_codes"] == {} and info["problems"] == []


def test_meta_reads_no_signal_file(clean_root, tmp_path, monkeypatch):
    copy = shutil.copytree(clean_root, tmp_path / "copy")
    expected = [(m.record_id, m.labels, m.extra["age"]) for m in (_open(copy).meta(i) for i in range(13))]
    for path in copy.rglob("*.mat"):
        path.write_bytes(b"")  # an emptied .mat would make any read fail, yet keeps the record in the index

    def no_read(*args, **kwargs):
        raise AssertionError("meta read a .mat file")

    monkeypatch.setattr(ch, "read_val", no_read)
    monkeypatch.setattr("scipy.io.loadmat", no_read)
    ds = _open(copy)
    assert [(m.record_id, m.labels, m.extra["age"]) for m in (ds.meta(i) for i in range(len(ds)))] == expected
    ds.describe()


# --------------------------------------------------------------------------------------------------- registry


def test_registry_and_parameters(clean_root, tmp_path):
    ds = open_dataset(parse_dataset_arg(f"challenge:{clean_root}"))
    assert isinstance(ds, ch.ChallengeDataset) and len(ds) == 13 and ds.spec.kind == "challenge"
    assert ds.name == f"challenge[{clean_root.name}]"
    with pytest.raises(ValueError, match="unknown parameter"):
        ch.ChallengeDataset(DatasetSpec("challenge", {"path": str(clean_root), "limit": 3}))
    with pytest.raises(ValueError, match="not a folder"):
        _open(tmp_path / "absent")
    with pytest.raises(ValueError, match="no .hea/.mat records"):
        _open(tmp_path)
