"""Bad files cost one record, never memory or a crash: header fields checked, windows cut before resampling,
bad metadata rows reported."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecglens_cli.main import main as cli
from orchestrator.datasets.base import DatasetSpec, Record, RecordError
from orchestrator.datasets.challenge import HeaderError, parse_header
from orchestrator.datasets.header_checks import wfdb_header_problem
from orchestrator.datasets.wfdb_folder import WfdbFolderDataset
from orchestrator.preprocess import PreprocessSpec, fit_window, preprocess_windows, resample, resample_for_windows
from orchestrator.stages.embed import metadata_problems
from wfdb_fixture import write_wfdb_folder

RECORD_LINE = "rec000 12 500 5000"
BAD_RECORD_LINES = {
    "fs0": ("rec000 12 0 5000", "not a positive number"),
    "fsneg": ("rec000 12 -500 5000", "not a positive number"),
    "fstiny": ("rec000 12 0.05 5000", "implausible"),
    "fsword": ("rec000 12 fast 5000", "not a number"),
    "lenabc": ("rec000 12 500 abc", "sample count 'abc'"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Clean records, one copy of rec000 per bad header variant, a gain-0 copy and two bad CSV rows."""
    root = tmp_path_factory.mktemp("badheaders")
    write_wfdb_folder(root, n=3, seed=0)
    header = (root / "rec000.hea").read_text()
    assert header.startswith(RECORD_LINE), header[:40]
    variants = {name: header.replace(RECORD_LINE, line, 1) for name, (line, _) in BAD_RECORD_LINES.items()}
    first_gain = header.splitlines()[1].split()[2]
    variants["gain0"] = header.replace(first_gain, "0" + first_gain[first_gain.index("/"):] if "/" in first_gain
                                       else "0", 1)
    for name, text in variants.items():
        (root / f"{name}.hea").write_text(text)  # each names rec000.dat, the clean record's signal file
    with open(root / "labels.csv", "a") as handle:
        for name in variants:
            handle.write(f"{name},p-{name},AF\n")
        handle.write(",nobody,AF\n../outside,x,AF\n")
    return root


def test_every_bad_header_field_costs_its_record_with_a_reason(folder):
    dataset = WfdbFolderDataset(DatasetSpec("wfdb", {"path": str(folder)}))
    ids = [dataset.meta(i).record_id for i in range(len(dataset))]
    expected = {**{name: why for name, (_, why) in BAD_RECORD_LINES.items()}, "gain0": "ADC gain 0"}
    for name, why in expected.items():
        with pytest.raises(RecordError, match=why):
            dataset.load(ids.index(name))
    assert dataset.load(ids.index("rec000")).signal.shape == (12, 5000)


def test_describe_survives_every_bad_header(folder, capsys):
    assert cli(["datasets", "describe", f"wfdb:{folder}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    problems = {p["record"]: p["problem"] for p in summary["problems"]}
    assert {"fs0", "fsneg", "fstiny", "fsword", "lenabc", "gain0"} <= set(problems)
    assert summary["sampling_rates_hz"] == {"500": 3}
    assert any(r.startswith("line ") for r in problems)  # the bad CSV rows


def test_bad_metadata_rows_reach_the_run_errors(folder):
    dataset = WfdbFolderDataset(DatasetSpec("wfdb", {"path": str(folder)}))
    rows = metadata_problems(dataset)
    assert [(p.record, p.stage) for p in rows] == [("labels.csv line 11", "warning"), ("labels.csv line 12", "warning")]
    assert "empty record name" in rows[0].reason and "outside the folder" in rows[1].reason


@pytest.mark.parametrize("text, why", [
    ("r 2 500 100\nr.dat 16 200/mV\nr.dat 16 nan/mV\n", "gain 'nan/mV' is not a number"),
    ("r 2 500 100\nr.dat 16 200/mV\nr.dat 16 0.0(3)/mV\n", "ADC gain 0.0"),
    ("r 2 inf 100\n", "sampling rate 'inf' is not a number"),
    ("r two 500 100\n", "signal count"),
    ("# only a comment\n", "empty"),
])
def test_header_text_checks(text, why):
    assert why in (wfdb_header_problem(text) or "")


def test_header_defaults_and_multi_segment_records_pass():
    assert wfdb_header_problem("r 2\nr.dat 16\nr.dat 16\n") is None  # rate, length, gain: WFDB defaults
    assert wfdb_header_problem("r/3 2 360 650000\nseg1 300000\n~ 50000\nseg2 300000\n") is None


def test_the_challenge_parser_refuses_implausible_rates_and_zero_gains():
    line = "A0001.mat 16+24 {}/mV 16 0 28 -1716 0 I"
    with pytest.raises(HeaderError, match="implausible"):
        parse_header("A0001 1 0.05 7500\n" + line.format(1000))
    with pytest.raises(HeaderError, match="uncalibrated"):
        parse_header("A0001 1 500 7500\n" + line.format(0))


def test_preprocessing_refuses_a_tiny_rate_before_allocating():
    record = Record("tiny", np.zeros((12, 5000), np.float32), 0.05, ("I",) * 12, "mV")
    with pytest.raises(RecordError, match="implausible"):
        preprocess_windows(record, PreprocessSpec(500.0, ("I",), 5000))


@pytest.mark.parametrize("window", ["start", "center", "average"])
@pytest.mark.parametrize("source_hz", [30.0, 100.0, 257.0, 1000.0])
def test_the_window_is_cut_before_resampling_with_identical_values(window, source_hz):
    rng = np.random.default_rng(int(source_hz))
    signal = rng.normal(size=(2, int(source_hz * 600)))  # ten minutes: far longer than the 10 s window
    spec = PreprocessSpec(500.0, ("I", "II"), 5000, window=window, max_windows=3)
    stretch, offset, total = resample_for_windows(signal, source_hz, spec)
    wanted = 5000 * (3 if window == "average" else 1)
    assert stretch.shape[-1] < wanted + 2000, "the whole record was resampled"
    assert total == resample(signal[:1], source_hz, 500.0).shape[-1] and offset >= 0
    record = Record("long", signal.astype(np.float32), source_hz, ("I", "II"), "mV")
    windows, _ = preprocess_windows(record, spec)
    whole32 = resample(signal.astype(np.float32).astype(np.float64), source_hz, 500.0)
    start = (whole32.shape[-1] - 5000) // 2 if window == "center" else 0
    assert np.array_equal(windows[0], fit_window(whole32[:, start:], 5000).astype(np.float32))
