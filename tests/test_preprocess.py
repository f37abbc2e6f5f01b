"""Preprocessing against known signals, the experiment file's validation, and the embedding cache."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.cache import CacheError, EmbeddingCache
from orchestrator.datasets.base import Record, RecordError
from orchestrator.dispatch import average_windows
from orchestrator.experiment import DEMO, ConfigError, parse_experiment
from orchestrator.preprocess import PreprocessSpec, canonical_lead, preprocess, preprocess_windows, select_leads

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def sine(freq: float, fs: float, seconds: float, leads: int = 12) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return np.tile(np.sin(2 * np.pi * freq * t), (leads, 1))


def peak_hz(x: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spectrum)])


@pytest.mark.parametrize("source_hz", [257.0, 400.0, 1000.0])
def test_resampling_keeps_a_sine_at_its_frequency(source_hz):
    spec = PreprocessSpec(500.0, LEADS, 5000)
    out = preprocess(Record("r", sine(7.0, source_hz, 10), source_hz, LEADS), spec)
    assert out.shape == (12, 5000) and out.dtype == np.float32
    assert abs(peak_hz(out[0], 500.0) - 7.0) < 0.11
    np.testing.assert_allclose(out[0, 500:4500], np.sin(2 * np.pi * 7 * np.arange(500, 4500) / 500), atol=2e-2)


def test_limb_leads_are_derived_by_einthoven_and_goldberger():
    rng = np.random.default_rng(0)
    lead_i, lead_ii = rng.normal(size=(2, 1000))
    stored = np.stack([lead_i, lead_ii, *rng.normal(size=(6, 1000))])
    out, filled = select_leads(stored, ("DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"), LEADS, "r")
    assert filled == []
    np.testing.assert_allclose(out[2], lead_ii - lead_i)
    np.testing.assert_allclose(out[3], -(lead_i + lead_ii) / 2)
    np.testing.assert_allclose(out[4], lead_i - lead_ii / 2)
    np.testing.assert_allclose(out[5], lead_ii - lead_i / 2)


def test_lead_aliases_and_reordering():
    assert [canonical_lead(n) for n in ("DIII", "avr", "AVL", "v1", " II ")] == ["III", "aVR", "aVL", "V1", "II"]
    stored = np.arange(12)[:, None] * np.ones((12, 10))
    out, _ = select_leads(stored, tuple(reversed(LEADS)), LEADS, "r")
    np.testing.assert_array_equal(out[:, 0], np.arange(11, -1, -1))


def test_missing_leads_refused_or_zero_filled():
    stored = np.ones((2, 100))
    with pytest.raises(RecordError, match="lead V1 is missing"):
        select_leads(stored, ("I", "II"), LEADS, "r1")
    out, filled = select_leads(stored, ("I", "II"), LEADS, "r1", missing="zero")
    assert filled == ["V1", "V2", "V3", "V4", "V5", "V6"] and not out[6:].any()
    with pytest.raises(RecordError, match="none of the model's leads"):
        select_leads(stored, ("X", "Y"), ("V1",), "r2", missing="zero")


def test_units_windows_and_bad_records():
    spec = PreprocessSpec(500.0, LEADS[:1], 1000)
    micro = preprocess(Record("r", np.full((1, 1000), 1000.0), 500.0, ("I",), units="uV"), spec)
    np.testing.assert_allclose(micro, 1.0)
    short = preprocess(Record("r", np.ones((1, 600)), 500.0, ("I",)), spec)
    assert short.shape == (1, 1000) and short[0, 599] == 1 and short[0, 600] == 0
    long = np.arange(3500.0)[None]
    avg = PreprocessSpec(500.0, ("I",), 1000, window="average", max_windows=2)
    wins, _ = preprocess_windows(Record("r", long, 500.0, ("I",)), avg)
    assert wins.shape == (2, 1, 1000) and wins[1, 0, 0] == 1000
    center, _ = preprocess_windows(Record("r", long, 500.0, ("I",)), PreprocessSpec(500.0, ("I",), 1000, window="center"))
    assert center[0, 0, 0] == 1250
    nan = np.ones((1, 1000))
    nan[0, 5] = np.nan
    with pytest.raises(RecordError, match="1 NaN/Inf"):
        preprocess(Record("bad", nan, 500.0, ("I",)), spec)
    with pytest.raises(RecordError, match="unknown units"):
        preprocess(Record("bad", np.ones((1, 10)), 500.0, ("I",), units="furlong"), spec)
    with pytest.raises(RecordError, match="does not match 2 leads"):
        preprocess(Record("bad", np.ones((1, 10)), 500.0, ("I", "II")), spec)


def test_notch_removes_mains_and_keeps_ecg_band():
    spec = PreprocessSpec(500.0, ("I",), 5000, notch_hz=(50.0,), highpass_hz=0.5)
    mixed = sine(10.0, 500.0, 10, 1) + sine(50.0, 500.0, 10, 1) + 2.0  # offset = extreme baseline
    out = preprocess(Record("r", mixed, 500.0, ("I",)), spec)[0]
    spectrum = np.abs(np.fft.rfft(out[500:-500]))
    freqs = np.fft.rfftfreq(4000, 1 / 500)
    assert spectrum[np.argmin(abs(freqs - 50))] < 0.05 * spectrum[np.argmin(abs(freqs - 10))]
    assert abs(out[500:-500].mean()) < 0.05


def test_average_windows():
    emb = np.arange(10.0).reshape(5, 2)
    np.testing.assert_array_equal(average_windows(emb, [2, 1, 2]), [[1, 2], [4, 5], [7, 8]])


def test_spec_hash_changes_with_the_pipeline():
    base = PreprocessSpec(500.0, LEADS, 5000)
    assert base.hash == PreprocessSpec(500.0, LEADS, 5000).hash
    assert base.hash != PreprocessSpec(500.0, LEADS, 5000, notch_hz=(50.0,)).hash


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown key(s) colour"),
    ({"scarcity": {"train_fractions": [0.5, 2.0]}}, "scarcity.train_fractions: 2.0 is outside"),
    ({"scarcity": {"fractions": [0.5]}}, "scarcity: unknown key(s) fractions; allowed: k_shots, sampling, train_fractions"),
    ({"seeds": []}, "seeds: at least one seed"),
    ({"models": []}, "models: at least one model"),
    ({"models": [{"name": "a", "colour": 1}]}, "models[0]: unknown key(s) colour"),
    ({"models": ["random-resnet", "random-resnet"]}, "duplicate model names"),
    ({"datasets": [{"kind": "synthetic", "sites": ["mars"]}]}, "unknown site(s) ['mars']"),
    ({"datasets": ["nope:/x"]}, "unknown kind 'nope'"),
    ({"split": {"test_fraction": 0.99}}, "split.test_fraction"),
    ({"probe": {"kinds": ["xgboost"]}}, "probe.kinds: ['xgboost'] not allowed; choose from linear, knn, mlp"),
    ({"analyses": {"umap": {"metric": "hamming"}}}, "analyses.umap.metric"),
    ({"preprocessing": {"window": "middle"}}, "preprocessing.window: 'middle' is not one of start, center, average"),
])
def test_experiment_validation_names_the_bad_key(change, message):
    with pytest.raises(ConfigError) as info:
        parse_experiment({**DEMO, **change}, "exp.yaml")
    assert message in str(info.value)


def test_models_accept_names_packages_and_addresses():
    exp = parse_experiment({**DEMO, "models": ["random-resnet", "grpc://10.0.0.5:8500",
                                               {"name": "hospital-fm", "endpoint": ["a:1", "b:2"]}]})
    assert [(m.name, m.remote, m.replicas) for m in exp.models] == [
        ("random-resnet", False, 1), ("10.0.0.5:8500", True, 1), ("hospital-fm", True, 2)]


def test_cache_writes_atomically_reads_in_order_and_detects_conflicts(tmp_path):
    cache = EmbeddingCache(tmp_path, "model", "data", {"model": "m"})
    cache.write(["a", "b"], np.array([[1, 2], [3, 4]], np.float32))
    cache.write(["c"], np.array([[5, 6]], np.float32))
    assert not list(cache.dir.glob("*.tmp"))
    reopened = EmbeddingCache(tmp_path, "model", "data")
    assert reopened.done_ids() == {"a", "b", "c"}
    np.testing.assert_array_equal(reopened.get(["c", "a"]), [[5, 6], [1, 2]])
    with pytest.raises(CacheError, match="missing"):
        reopened.get(["zz"])
    with pytest.raises(CacheError, match="unique"):
        reopened.write(["x", "x"], np.zeros((2, 2), np.float32))
    reopened.write(["b", "d"], np.array([[9, 9], [7, 7]], np.float32))  # a second, different embedding of b
    with pytest.raises(CacheError, match="record b has two different embeddings"):
        EmbeddingCache(tmp_path, "model", "data").done_ids()


def test_scipy_signal_is_imported_only_where_a_filter_or_resampling_runs():
    """~1.4 s of CPU per endpoint worker: a default (unfiltered, same-rate) read must not pay it; a filter does."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from orchestrator.datasets.base import Record\n"
        "from orchestrator.preprocess import PreprocessSpec, preprocess\n"
        "record = Record('r', np.zeros((1, 5000)), 500.0, ('I',))\n"
        "preprocess(record, PreprocessSpec(500.0, ('I',), 5000))\n"
        "plain = 'scipy.signal' in sys.modules\n"
        "preprocess(record, PreprocessSpec(500.0, ('I',), 5000, highpass_hz=0.5))\n"
        "print(plain, 'scipy.signal' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_filters_above_nyquist_are_skipped_and_the_signal_is_returned_as_is():
    spec = PreprocessSpec(100.0, ("I",), 1000, notch_hz=(60.0,), lowpass_hz=80.0)
    x = sine(7.0, 100.0, 10, 1)
    np.testing.assert_array_equal(preprocess(Record("r", x, 100.0, ("I",)), spec)[0], x[0].astype(np.float32))
