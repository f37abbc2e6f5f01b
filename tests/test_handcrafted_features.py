"""Handcrafted baseline features on synthetic P-QRS-T records built from Gaussian bumps."""
from __future__ import annotations

import numpy as np
import pytest

from services.embedding.zoo.handcrafted_features import (
    FEATURE_VERSION,
    GLOBAL_FEATURES,
    PER_LEAD_FEATURES,
    extract_features,
    feature_names,
)

FS = 500.0
DURATION_S = 10.0
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# Per-lead scale of the beat; negative values flip polarity as in aVR and V1.
GAINS = np.array([0.6, 1.0, 0.4, -0.8, 0.3, 0.7, -0.5, 0.4, 0.8, 1.1, 1.2, 0.9])
ST_LEADS = ("V2", "V3", "V4")


def _gauss(t: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Unit Gaussian bump centred at mu seconds."""
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    """Logistic step, used for a smooth ST plateau."""
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _beat(t: np.ndarray, qrs_ms: float, p_wave: bool) -> np.ndarray:
    """One P-QRS-T complex with R at t=0; Q and S edges sit about qrs_ms/2 either side."""
    w = qrs_ms / 1000.0
    wave = -0.1 * _gauss(t, -w / 3, w / 12) + _gauss(t, 0.0, w / 8) - 0.25 * _gauss(t, w / 3, w / 12)
    wave += 0.3 * _gauss(t, 0.30, 0.04)
    if p_wave:
        wave += 0.15 * _gauss(t, -0.17, 0.02)
    return wave


def _st_plateau(t: np.ndarray, qrs_ms: float) -> np.ndarray:
    """Unit ST elevation from the J point into the T wave."""
    j = qrs_ms / 2000.0
    return _sigmoid((t - j) / 0.008) - _sigmoid((t - 0.33) / 0.03)


def _record(beat_times: np.ndarray, qrs_ms: float = 90.0, st_mv: float = 0.0, p_wave: bool = True,
            noise_mv: float = 0.01, seed: int = 0) -> np.ndarray:
    """[L, T] float32 record with beats at the given times, a little noise and baseline wander."""
    t = np.arange(int(FS * DURATION_S)) / FS
    rel = t[None, :] - beat_times[:, None]
    base = _beat(rel, qrs_ms, p_wave).sum(axis=0)
    st = _st_plateau(rel, qrs_ms).sum(axis=0)
    st_gain = np.array([st_mv if lead in ST_LEADS else 0.0 for lead in LEADS])
    rng = np.random.default_rng(seed)
    x = GAINS[:, None] * base + st_gain[:, None] * st
    x += 0.05 * np.sin(2 * np.pi * 0.2 * t)[None, :] + noise_mv * rng.standard_normal(x.shape)
    return x.astype(np.float32)


def _regular(bpm: float) -> np.ndarray:
    """Beat times of a perfectly regular rhythm."""
    return np.arange(0.4, DURATION_S - 0.2, 60.0 / bpm)


def _irregular(seed: int = 1) -> np.ndarray:
    """Beat times with independent uniform RR intervals, AF-like."""
    rr = np.random.default_rng(seed).uniform(0.4, 1.1, size=40)
    times = 0.4 + np.concatenate([[0.0], np.cumsum(rr)])
    return times[times < DURATION_S - 0.2]


def _features(records: list[np.ndarray] | np.ndarray, fs: float = FS) -> np.ndarray:
    """Features of a list of [L, T] records."""
    return extract_features(np.stack(records), fs, LEADS)


def _col(name: str) -> int:
    """Column index of a feature name for the 12 standard leads."""
    return feature_names(LEADS).index(name)


def test_names_match_output_shape_and_dtype():
    names = feature_names(LEADS)
    assert len(names) == len(GLOBAL_FEATURES) + len(PER_LEAD_FEATURES) * len(LEADS) == 239
    assert len(set(names)) == len(names)
    assert names[: len(GLOBAL_FEATURES)] == list(GLOBAL_FEATURES)
    assert FEATURE_VERSION == "1"
    out = _features([_record(_regular(70))])
    assert out.shape == (1, len(names))
    assert out.dtype == np.float32


def test_dimension_depends_only_on_lead_count():
    x = np.stack([_record(_regular(70))[:3]])
    out = extract_features(x, FS, ["a", "b", "c"])
    assert out.shape == (1, len(feature_names(["a", "b", "c"]))) == (1, 11 + 19 * 3)


@pytest.mark.parametrize("bpm", [50.0, 75.0, 120.0])
def test_heart_rate_matches_construction(bpm):
    out = _features([_record(_regular(bpm))])[0]
    assert abs(out[_col("hr_bpm")] - bpm) <= 3.0
    assert out[_col("hr_valid")] == 1.0
    assert out[_col("n_beats")] == len(_regular(bpm))


def test_irregular_rhythm_scores_much_higher():
    regular, irregular = _features([_record(_regular(80)), _record(_irregular(), p_wave=False)])
    for name in ("rr_irregularity", "rr_cv", "rr_rmssd_ms"):
        assert irregular[_col(name)] > 5 * regular[_col(name)] + 0.02
    assert regular[_col("rr_irregularity")] < 0.02
    assert irregular[_col("rr_pnn50")] > 0.5


def test_missing_p_wave_shrinks_p_amplitude():
    with_p, without_p = _features([_record(_regular(70)), _record(_regular(70), p_wave=False)])
    assert abs(with_p[_col("II_p_amp")] - 0.15) < 0.05
    assert abs(without_p[_col("II_p_amp")]) < 0.05


def test_wide_qrs_gives_larger_width():
    narrow, wide = _features([_record(_regular(70), qrs_ms=90), _record(_regular(70), qrs_ms=140)])
    qrs_n, qrs_w = narrow[_col("qrs_width_ms")], wide[_col("qrs_width_ms")]
    assert qrs_w - qrs_n > 30.0
    assert qrs_n < 120.0 < qrs_w


def test_st_elevation_raises_st_level():
    base, raised = _features([_record(_regular(70)), _record(_regular(70), st_mv=0.2)])
    for lead in ST_LEADS:
        assert raised[_col(f"{lead}_st_level")] - base[_col(f"{lead}_st_level")] > 0.12
    assert abs(raised[_col("I_st_level")] - base[_col("I_st_level")]) < 0.03


def test_mains_fraction_rises_with_50hz_interference():
    clean = _record(_regular(70))
    t = np.arange(clean.shape[1]) / FS
    hum = clean + (0.2 * np.sin(2 * np.pi * 50.0 * t)).astype(np.float32)
    a, b = _features([clean, hum])
    col = _col("II_mains_frac")
    assert b[col] > 0.2 and b[col] > 10 * a[col]


@pytest.mark.parametrize("kind", ["zeros", "flat_lead", "noise", "constant", "nan_samples", "huge"])
def test_degenerate_input_gives_finite_features(kind):
    n_t = int(FS * DURATION_S)
    if kind == "zeros":
        x = np.zeros((len(LEADS), n_t), np.float32)
    elif kind == "flat_lead":
        x = _record(_regular(70))
        x[4] = 0.0
    elif kind == "noise":
        x = np.random.default_rng(3).normal(0, 2.0, (len(LEADS), n_t)).astype(np.float32)
    elif kind == "constant":
        x = np.full((len(LEADS), n_t), 1.7, np.float32)
    elif kind == "nan_samples":
        x = _record(_regular(70))
        x[2, 100:200] = np.nan
        x[5, 7] = np.inf
    else:
        x = np.full((len(LEADS), n_t), 3e38, np.float32)
        x[:, ::7] = -3e38
    out = _features([x])
    assert np.all(np.isfinite(out))
    if kind in ("zeros", "constant"):
        assert out[0, _col("hr_valid")] == 0.0
        assert out[0, _col("hr_bpm")] == 0.0
    if kind == "flat_lead":
        assert out[0, _col("hr_valid")] == 1.0
        assert np.all(out[0, [_col(f"aVL_{n}") for n in ("std", "skew", "kurtosis", "r_amp")]] == 0.0)


@pytest.mark.parametrize("fs", [50.0, 100.0, 250.0])
def test_low_sampling_rates_stay_finite_and_find_the_rhythm(fs):
    x = _record(_regular(75))
    step = int(FS // fs)
    out = extract_features(x[None, :, ::step], fs, LEADS)[0]
    assert np.all(np.isfinite(out))
    assert abs(out[_col("hr_bpm")] - 75.0) <= 3.0


def test_short_records_and_empty_batches_stay_finite():
    for n_t in (1, 5, 50, 400):
        out = extract_features(np.ones((2, len(LEADS), n_t), np.float32), FS, LEADS)
        assert out.shape == (2, len(feature_names(LEADS)))
        assert np.all(np.isfinite(out))
    assert extract_features(np.zeros((0, len(LEADS), 5000), np.float32), FS, LEADS).shape == (0, 239)


def test_batch_rows_equal_single_record_results():
    records = [_record(_regular(60)), _record(_irregular(), p_wave=False), _record(_regular(110), qrs_ms=140),
               np.zeros((len(LEADS), int(FS * DURATION_S)), np.float32)]
    batch = _features(records)
    for i, rec in enumerate(records):
        np.testing.assert_allclose(batch[i], _features([rec])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(batch, _features(records))


def test_rejects_mismatched_input():
    x = np.zeros((1, len(LEADS), 100), np.float32)
    with pytest.raises(ValueError):
        extract_features(x, FS, LEADS[:-1])
    with pytest.raises(ValueError):
        extract_features(x[0], FS, LEADS)
    with pytest.raises(ValueError):
        extract_features(x, 0.0, LEADS)
    with pytest.raises(ValueError):
        feature_names(["I", "I"])
