"""Tests of the synthetic 12-lead ECG generator: lead algebra, determinism, metadata, and per-condition physiology."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from orchestrator.datasets import synthetic as syn
from orchestrator.datasets.synthetic import (
    CONDITIONS,
    LEADS,
    SITES,
    Site,
    SyntheticDataset,
    SyntheticRecord,
    generate_record,
)

ROOT = Path(__file__).resolve().parents[1]
L = {name: k for k, name in enumerate(LEADS)}
CLINICAL_HR = {
    "NSR": (60.0, 100.0),
    "AF": (60.0, 150.0),
    "SB": (40.0, 58.0),
    "STach": (102.0, 150.0),
    "BBB": (60.0, 100.0),
    "STE": (60.0, 100.0),
}
TERRITORIES = {"anterior": ("V1", "V2", "V3", "V4"), "inferior": ("II", "III", "aVF")}


# ------------------------------------------------------------------------------------------- measurement helpers


def r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices from the 5-20 Hz energy summed over leads."""
    sos = butter(2, [5, 20], btype="band", fs=fs, output="sos")
    env = (sosfiltfilt(sos, x.astype(float), axis=1) ** 2).sum(axis=0)
    w = max(1, int(0.05 * fs))
    env = np.convolve(env, np.ones(w) / w, mode="same")
    peaks, _ = find_peaks(env, height=0.3 * np.percentile(env, 99), distance=int(0.27 * fs))
    return peaks


def median_beat(x: np.ndarray, fs: float, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Baseline-corrected median beat [12, W] of the 0.5-40 Hz signal and its time axis (R at 0)."""
    sos = butter(2, [0.5, 40], btype="band", fs=fs, output="sos")
    xf = sosfiltfilt(sos, x.astype(float), axis=1)
    a, b = int(0.3 * fs), int(0.5 * fs)
    peaks = peaks[(peaks - a >= 0) & (peaks + b <= x.shape[1])]
    mb = np.median(np.stack([xf[:, p - a : p + b] for p in peaks]), axis=0)
    t = (np.arange(mb.shape[1]) - a) / fs
    # PR-segment baseline, so ST levels are relative to the isoelectric line.
    return mb - mb[:, (t > -0.09) & (t < -0.06)].mean(axis=1, keepdims=True), t


def qrs_width(mb: np.ndarray, t: np.ndarray, fs: float) -> float:
    """Span (s) where the summed absolute slope exceeds 20 % of its QRS maximum."""
    slope = np.abs(np.gradient(mb, axis=1)).sum(axis=0) * fs
    w = max(1, int(0.01 * fs))
    slope = np.convolve(slope, np.ones(w) / w, mode="same")
    window = (t > -0.10) & (t < 0.14)
    seg = slope[window]
    above = np.flatnonzero(seg > 0.2 * seg.max())
    return float((above[-1] - above[0]) / fs)


def territory_st(mb: np.ndarray, t: np.ndarray) -> float:
    """Highest mean ST level (70-90 ms after R) over the anterior and inferior territories."""
    st = mb[:, (t > 0.07) & (t < 0.09)].mean(axis=1)
    return max(float(np.mean([st[L[n]] for n in leads])) for leads in TERRITORIES.values())


def rr_intervals(condition: str, site: str, seed: int) -> np.ndarray:
    """RR intervals (s) measured from a generated record."""
    x, fs = generate_record(condition, site, seed)
    return np.diff(r_peaks(x, fs)) / fs


def beat_features(condition: str, site: str, seed: int) -> tuple[float, float, float]:
    """(QRS width s, territory ST mV, max |median beat| mV) of one generated record."""
    x, fs = generate_record(condition, site, seed)
    mb, t = median_beat(x, fs, r_peaks(x, fs))
    return qrs_width(mb, t, fs), territory_st(mb, t), float(np.abs(mb).max())


# ------------------------------------------------------------------------------------------- API and tables


def test_constants_and_site_table() -> None:
    """Exact labels and lead names; at least three sites that differ in rate, mains and case mix."""
    assert CONDITIONS == ("NSR", "AF", "SB", "STach", "BBB", "STE")
    assert LEADS == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert len(SITES) >= 3
    assert {s.mains_hz for s in SITES.values()} == {50.0, 60.0}
    assert len({s.sampling_rate_hz for s in SITES.values()}) >= 3
    for name, s in SITES.items():
        assert s.name == name and s.region
        assert set(s.prevalence) == set(CONDITIONS)
        assert sum(s.prevalence.values()) == pytest.approx(1.0)
    assert len({tuple(sorted(s.prevalence.items())) for s in SITES.values()}) == len(SITES)


def test_invalid_inputs_raise() -> None:
    """Unknown labels, unknown sites and bad prevalence tables are rejected."""
    with pytest.raises(ValueError):
        generate_record("MI", "eu", 0)
    with pytest.raises(ValueError):
        generate_record("NSR", "mars", 0)
    with pytest.raises(ValueError):
        Site("x", 500.0, 50.0, 0.01, 0.01, 0.01, 1.0, {"NSR": 1.0}, "Nowhere")
    with pytest.raises(ValueError):
        SyntheticDataset(sites=("eu", "nowhere"))


def test_custom_site_object_is_accepted() -> None:
    """A Site instance works in place of a name."""
    quiet = Site("lab", 360.0, 60.0, 0.0, 0.0, 0.0, 1.0, dict(SITES["eu"].prevalence), "Lab")
    x, fs = generate_record("NSR", quiet, 3, duration_s=4.0)
    assert fs == 360.0 and x.shape == (12, 1440)


# ------------------------------------------------------------------------------------------- lead algebra, shapes


@pytest.mark.parametrize("site", sorted(SITES))
@pytest.mark.parametrize("condition", CONDITIONS)
def test_einthoven_goldberger_relations_hold_with_noise(site: str, condition: str) -> None:
    """III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2 to float32 precision, noise included."""
    x, _ = generate_record(condition, site, 11)
    x = x.astype(np.float64)
    i, ii = x[L["I"]], x[L["II"]]
    tol = dict(rtol=0, atol=2e-5)
    np.testing.assert_allclose(x[L["III"]], ii - i, **tol)
    np.testing.assert_allclose(x[L["aVR"]], -(i + ii) / 2, **tol)
    np.testing.assert_allclose(x[L["aVL"]], i - ii / 2, **tol)
    np.testing.assert_allclose(x[L["aVF"]], ii - i / 2, **tol)
    # The relations must not be trivially satisfied by a silent signal.
    assert np.std(x[L["III"]]) > 0.05


@pytest.mark.parametrize("site", sorted(SITES))
@pytest.mark.parametrize("duration_s", [10.0, 2.5])
def test_length_is_duration_times_rate(site: str, duration_s: float) -> None:
    """[12, duration x fs] float32 at the site's own sampling rate."""
    x, fs = generate_record("NSR", site, 0, duration_s=duration_s)
    assert fs == SITES[site].sampling_rate_hz
    assert x.shape == (12, int(round(duration_s * fs)))
    assert x.dtype == np.float32


@pytest.mark.parametrize("site", sorted(SITES))
def test_finite_and_plausible_amplitude(site: str) -> None:
    """No NaN or inf; the largest QRS deflection of the median beat is 0.5-3 mV."""
    for k, condition in enumerate(CONDITIONS):
        x, _ = generate_record(condition, site, 100 + k)
        assert np.isfinite(x).all()
        _, _, amp = beat_features(condition, site, 100 + k)
        assert 0.5 <= amp <= 3.0, (condition, amp)


# ------------------------------------------------------------------------------------------- determinism


def _digest(condition: str, site: str, seed: int) -> str:
    """sha256 of a generated record's bytes."""
    x, _ = generate_record(condition, site, seed)
    return hashlib.sha256(x.tobytes()).hexdigest()


def test_generate_record_is_deterministic_and_seed_sensitive() -> None:
    """Same inputs give identical arrays; a different seed or site gives a different one."""
    a, _ = generate_record("AF", "sa", 5)
    b, _ = generate_record("AF", "sa", 5)
    c, _ = generate_record("AF", "sa", 6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert _digest("NSR", "eu", 1) != _digest("NSR", "na", 1)


def test_bit_identical_across_processes() -> None:
    """A fresh interpreter with another hash seed produces the same bytes (no hash() or global RNG involved)."""
    code = (
        "import hashlib; from orchestrator.datasets.synthetic import generate_record, SyntheticDataset;"
        "x,_=generate_record('STE','as',42); r=SyntheticDataset(('sa',),20,seed=3).load(13);"
        "print(hashlib.sha256(x.tobytes()).hexdigest(), hashlib.sha256(r.signal.tobytes()).hexdigest(), r.condition)"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    rec = SyntheticDataset(("sa",), 20, seed=3).load(13)
    expected = f"{_digest('STE', 'as', 42)} {hashlib.sha256(rec.signal.tobytes()).hexdigest()} {rec.condition}"
    assert out.stdout.strip() == expected


def test_dataset_load_is_deterministic() -> None:
    """Loading a record twice, or from a second dataset object, gives identical signals; another seed differs."""
    d1, d2 = SyntheticDataset(seed=4), SyntheticDataset(seed=4)
    assert np.array_equal(d1.load(7).signal, d1.load(7).signal)
    assert np.array_equal(d1.load(7).signal, d2.load(7).signal)
    assert not np.array_equal(d1.load(7).signal, SyntheticDataset(seed=5).load(7).signal)


# ------------------------------------------------------------------------------------------- dataset and metadata


def test_dataset_indexing_and_ids() -> None:
    """Length, id format and order, and the site of each index."""
    ds = SyntheticDataset(sites=("eu", "sa", "as"), records_per_site=30, seed=1, duration_s=5.0)
    ids = ds.record_ids()
    assert len(ds) == 90 == len(ids) == len(set(ids))
    assert ids[0] == "eu-000000" and ids[17] == "eu-000017" and ids[30] == "sa-000000"
    rec = ds.load(45)
    assert isinstance(rec, SyntheticRecord)
    assert rec.record_id == ids[45] == "sa-000015"
    assert rec.site == "sa" and rec.leads == LEADS and rec.sampling_rate_hz == 400.0
    assert rec.signal.shape == (12, 2000)
    with pytest.raises(IndexError):
        ds.metadata(90)


def test_metadata_matches_load() -> None:
    """load(i) agrees with metadata(i) on every shared field."""
    ds = SyntheticDataset(sites=("eu", "sa", "as", "na"), records_per_site=12, seed=9, duration_s=3.0)
    for i in range(len(ds)):
        meta, rec = ds.metadata(i), ds.load(i)
        assert set(meta) == {"record_id", "patient_id", "site", "condition", "age", "sex"}
        for key, value in meta.items():
            assert getattr(rec, key) == value
        assert meta["condition"] in CONDITIONS and meta["sex"] in ("M", "F") and 18 <= meta["age"] <= 95


def test_metadata_does_not_generate_waveforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """metadata() never touches the waveform synthesiser."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("metadata generated a waveform")

    monkeypatch.setattr(syn, "_synthesize", boom)
    ds = SyntheticDataset(records_per_site=50)
    assert len([ds.metadata(i) for i in range(len(ds))]) == 100


def test_metadata_independent_of_dataset_size() -> None:
    """Record j of a site has the same metadata whatever records_per_site or the other sites are."""
    small = SyntheticDataset(sites=("sa",), records_per_site=10, seed=2)
    large = SyntheticDataset(sites=("eu", "sa"), records_per_site=40, seed=2)
    for j in range(10):
        assert small.metadata(j) == large.metadata(40 + j)


def test_patients_with_two_records() -> None:
    """Some patients own two records; their age and sex agree; patient ids never cross sites."""
    ds = SyntheticDataset(sites=("eu", "sa"), records_per_site=200, seed=0)
    by_patient: dict[str, list[dict]] = {}
    for i in range(len(ds)):
        m = ds.metadata(i)
        assert m["patient_id"].startswith(m["site"] + "-p")
        by_patient.setdefault(m["patient_id"], []).append(m)
    counts = np.array([len(v) for v in by_patient.values()])
    assert counts.max() == 2
    assert 20 <= (counts == 2).sum() <= 80
    for records in by_patient.values():
        assert len({(r["age"], r["sex"], r["site"]) for r in records}) == 1


@pytest.mark.parametrize("site", sorted(SITES))
def test_prevalence_follows_site_table(site: str) -> None:
    """Over 2000 records each condition's frequency is within 0.05 of the site's table."""
    ds = SyntheticDataset(sites=(site,), records_per_site=2000, seed=7)
    labels = [ds.metadata(i)["condition"] for i in range(len(ds))]
    for condition in CONDITIONS:
        freq = labels.count(condition) / len(labels)
        assert abs(freq - SITES[site].prevalence[condition]) < 0.05, (condition, freq)


def test_same_patient_shares_morphology() -> None:
    """Two records of one patient share QRS morphology, so leakage across a record-level split is real."""
    ds = SyntheticDataset(sites=("eu",), records_per_site=200, seed=0)
    pairs = [(i, i + 1) for i in range(0, 200, 2) if ds.metadata(i)["patient_id"] == ds.metadata(i + 1)["patient_id"]]
    pairs = [p for p in pairs if ds.metadata(p[0])["condition"] == ds.metadata(p[1])["condition"] == "NSR"][:3]
    assert pairs, "no NSR-NSR patient pair in the first 200 records"
    for i, j in pairs:
        a, b = (ds.load(k) for k in (i, j))
        ma, ta = median_beat(a.signal, 500.0, r_peaks(a.signal, 500.0))
        mb, _ = median_beat(b.signal, 500.0, r_peaks(b.signal, 500.0))
        qrs = (ta > -0.06) & (ta < 0.06)
        # Correlation of the 12-lead QRS complexes across the two records of one patient.
        assert np.corrcoef(ma[:, qrs].ravel(), mb[:, qrs].ravel())[0, 1] > 0.9


# ------------------------------------------------------------------------------------------- physiology


@pytest.mark.parametrize("condition", CONDITIONS)
def test_heart_rate_in_condition_range(condition: str) -> None:
    """HR measured from detected R peaks lies in the condition's clinical range at every site."""
    lo, hi = CLINICAL_HR[condition]
    for site in SITES:
        for seed in range(3):
            rr = rr_intervals(condition, site, seed)
            hr = 60.0 / rr.mean()
            assert lo <= hr <= hi, (site, seed, hr)


def test_af_rr_irregularity_exceeds_sinus() -> None:
    """RR coefficient of variation: AF irregularly irregular, NSR only respiratory modulation."""
    cv = {c: [float(np.std(r) / np.mean(r)) for r in (rr_intervals(c, s, k) for s in SITES for k in range(3))]
          for c in ("NSR", "AF")}
    assert max(cv["NSR"]) < 0.06
    assert min(cv["AF"]) > 0.10
    assert np.median(cv["AF"]) > 4 * np.median(cv["NSR"])


def test_af_has_no_p_waves_and_fibrillatory_waves_at_4_to_9_hz() -> None:
    """AF beats carry no P wave; the atrial source oscillates at 4-9 Hz with low amplitude."""
    morph = syn._draw_morphology(np.random.default_rng(0))
    fs = 500.0

    def pre_qrs_height(condition: str) -> float:
        """Peak |dipole| of the beat template 300-80 ms before R, where the P wave lives."""
        rhythm = syn._draw_rhythm(condition, np.random.default_rng(1))
        template, r_index = syn._template(morph, rhythm, fs, 0.8)
        t = (np.arange(template.shape[1]) - r_index) / fs
        return float(np.abs(template[:, (t > -0.3) & (t < -0.08)]).max())

    assert pre_qrs_height("NSR") > 0.05
    assert pre_qrs_height("AF") < 1e-3
    t = np.arange(5000) / fs
    f = syn._fibrillation(np.random.default_rng(0), t)
    freqs = np.fft.rfftfreq(t.size, 1 / fs)
    for k in range(3):
        spec = np.abs(np.fft.rfft(f[k] - f[k].mean()))
        assert 4.0 <= freqs[np.argmax(spec)] <= 9.0
    assert 0.02 < np.abs(f).max() < 0.2  # present but low amplitude


def test_bbb_qrs_wider_than_nsr() -> None:
    """Slope-envelope QRS width: every BBB record wider than every NSR record."""
    nsr = [beat_features("NSR", s, k)[0] for s in SITES for k in range(3)]
    bbb = [beat_features("BBB", s, k)[0] for s in SITES for k in range(3)]
    assert max(nsr) < 0.095
    assert min(bbb) > 0.105
    assert min(bbb) > max(nsr) + 0.015


def test_rbbb_pattern_in_v1() -> None:
    """RBBB-like terminal R' in V1: the late QRS (40-100 ms after R) in V1 is clearly positive for BBB only."""

    def late_v1(condition: str, seed: int) -> float:
        """Max V1 amplitude 40-100 ms after R."""
        x, fs = generate_record(condition, "eu", seed)
        mb, t = median_beat(x, fs, r_peaks(x, fs))
        return float(mb[L["V1"], (t > 0.04) & (t < 0.10)].max())

    assert min(late_v1("BBB", k) for k in range(4)) > 0.2
    assert max(late_v1("NSR", k) for k in range(4)) < 0.15


def test_ste_st_level_above_nsr() -> None:
    """Territory ST level: STE elevated by >= ~0.1 mV, NSR near the isoelectric line."""
    nsr = [beat_features("NSR", s, k)[1] for s in SITES for k in range(3)]
    ste = [beat_features("STE", s, k)[1] for s in SITES for k in range(3)]
    assert max(nsr) < 0.09
    assert min(ste) > 0.07
    assert np.median(ste) - np.median(nsr) > 0.1


@pytest.mark.parametrize("site", sorted(SITES))
def test_mains_peak_at_site_frequency(site: str) -> None:
    """Spectrum summed over leads: the site's mains frequency stands out; the other grid frequency does not."""
    x, fs = generate_record("NSR", site, 2)
    spec = np.abs(np.fft.rfft(x.astype(float), axis=1)).sum(axis=0)
    freqs = np.fft.rfftfreq(x.shape[1], 1 / fs)

    def power_near(f0: float) -> float:
        """Largest spectral magnitude within 0.3 Hz of f0."""
        return float(spec[np.abs(freqs - f0) < 0.3].max())

    mains = SITES[site].mains_hz
    other = 60.0 if mains == 50.0 else 50.0
    assert power_near(mains) > 5 * power_near(other)
    band = (freqs > 40) & (freqs < 70) & (np.abs(freqs - mains) > 1)
    assert power_near(mains) > 10 * np.median(spec[band])
