"""Classical handcrafted ECG features: the non-learned baseline embedding (pure numpy/scipy).

Layout of one feature row for L leads, D = 11 + 19 * L (239 for the standard 12 leads):

* 11 record-level features first, so their indices do not depend on L:
  hr_bpm, hr_valid, n_beats, rr_mean_ms, rr_sdnn_ms, rr_rmssd_ms, rr_pnn50, rr_cv,
  rr_irregularity, qrs_width_ms, beat_consistency;
* then 19 features per lead, lead by lead in the given order, named ``<lead>_<feature>``:
  amplitude (mean, std, min, max, ptp, skew, kurtosis, p05, p95, in mV except the moments),
  spectrum (relative Welch power in 0.5-4, 4-15 and 15-40 Hz, mains fraction within 1 Hz of
  50 and 60 Hz, log10 of the 0.5 Hz-Nyquist power in mV^2),
  median-beat morphology relative to the PR-segment baseline (r_amp, s_amp, p_amp, st_level
  at J+60..80 ms at 60 bpm shortened with QT at faster rates, signed t_amp, in mV).

Beats come from a Pan-Tompkins-like detector (adaptive signal/noise levels, 200 ms refractory,
T-wave rejection, search-back) on the summed squared slope of the 5-15 Hz band-passed leads;
the beat fiducial is the centroid of that energy around each QRS.
Morphology is measured on the median beat after a cubic-spline PR-knot baseline removal and a
40 Hz low-pass with 50/60 Hz notches; QRS bounds come from its spatial velocity.

Fallbacks: with fewer than 2 beats the RR features and hr_bpm are 0; with fewer than 3 (or a
rate outside 20-300 bpm) hr_valid is 0; with no beat wholly inside the record (350 ms before,
550 ms after the fiducial) morphology, qrs_width_ms and beat_consistency are 0; flat leads get
0 moments and band powers and log10_power = -12. Every output is finite float32, and each row depends only on
its own record. P waves at fast rates (> ~120 bpm) merge with the previous T wave in p_amp.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import signal
from scipy.interpolate import CubicSpline
from scipy.ndimage import uniform_filter1d

FEATURE_VERSION = "1"

GLOBAL_FEATURES = (
    "hr_bpm", "hr_valid", "n_beats", "rr_mean_ms", "rr_sdnn_ms", "rr_rmssd_ms", "rr_pnn50",
    "rr_cv", "rr_irregularity", "qrs_width_ms", "beat_consistency",
)
AMPLITUDE_FEATURES = ("mean", "std", "min", "max", "ptp", "skew", "kurtosis", "p05", "p95")
SPECTRAL_FEATURES = ("bp_0p5_4hz", "bp_4_15hz", "bp_15_40hz", "mains_frac", "log10_power")
MORPHOLOGY_FEATURES = ("r_amp", "s_amp", "p_amp", "st_level", "t_amp")
PER_LEAD_FEATURES = AMPLITUDE_FEATURES + SPECTRAL_FEATURES + MORPHOLOGY_FEATURES

_BANDS_HZ = ((0.5, 4.0), (4.0, 15.0), (15.0, 40.0))
_MAINS_HZ = (50.0, 60.0)
_MAINS_HALF_WIDTH_HZ = 1.0
_TINY = 1e-12
# QRS bounds on the median beat's spatial velocity, calibrated on Gaussian-wave beats of known
# width: the fraction of the peak that counts as QRS, the longest dip bridged inside it, the
# peak fraction a run after the peak needs to join, and the noise floor (factor x percentile).
_QRS_VELOCITY_FRACTION = 0.08
_QRS_MAX_GAP_MS = 20.0
_QRS_TAIL_FRACTION = 0.2
_QRS_NOISE_FACTOR = 2.0
_QRS_NOISE_PCT = 25.0
# Absurd inputs (|x| ~ 1e38 mV) give float64 features beyond float32; clip so the cast stays finite.
_F32_MAX = float(np.finfo(np.float32).max)


def feature_names(leads: Sequence[str]) -> list[str]:
    """Names of the features, in output order; len == 11 + 19 * len(leads)."""
    leads = _check_leads(leads)
    return list(GLOBAL_FEATURES) + [f"{lead}_{name}" for lead in leads for name in PER_LEAD_FEATURES]


def extract_features(ecg: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
    """[B, L, T] float32 in mV -> [B, D] float32 features; each row depends only on its own record."""
    x = _check_input(ecg, fs, leads)
    fs = float(fs)
    n_rec, n_leads, _ = x.shape
    out = np.zeros((n_rec, len(GLOBAL_FEATURES) + len(PER_LEAD_FEATURES) * n_leads))
    if n_rec == 0 or n_leads == 0:
        return out.astype(np.float32)
    amp = _amplitude_stats(x)
    spec = _spectral_features(x, fs)
    energy = _qrs_energy(x, fs)
    for b in range(n_rec):
        peaks = _detect_r_peaks(energy[b], fs)
        rhythm = _rhythm_features(peaks, fs)
        qrs_ms, consistency, morph = _morphology(x[b], peaks, fs, rhythm["rr_mean_ms"])
        rhythm.update(qrs_width_ms=qrs_ms, beat_consistency=consistency)
        per_lead = np.concatenate([amp[b], spec[b], morph], axis=1)
        out[b] = np.concatenate([[rhythm[k] for k in GLOBAL_FEATURES], per_lead.ravel()])
    out = np.nan_to_num(out, nan=0.0, posinf=_F32_MAX, neginf=-_F32_MAX)
    return np.clip(out, -_F32_MAX, _F32_MAX).astype(np.float32)


def _check_leads(leads: Sequence[str]) -> list[str]:
    """Lead names as a list; duplicates would make feature names ambiguous."""
    leads = [str(lead) for lead in leads]
    if len(set(leads)) != len(leads):
        raise ValueError(f"duplicate lead names: {leads}")
    return leads


def _check_input(ecg: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
    """Validate shapes and rate; return float64 with non-finite samples replaced by 0."""
    leads = _check_leads(leads)
    x = np.asarray(ecg)
    if x.ndim != 3:
        raise ValueError(f"ecg must be [B, L, T], got shape {x.shape}")
    if x.shape[1] != len(leads):
        raise ValueError(f"ecg has {x.shape[1]} leads but {len(leads)} lead names were given")
    if x.shape[2] < 1:
        raise ValueError("ecg has no samples")
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive number, got {fs!r}")
    x = x.astype(np.float64)
    # A NaN or Inf sample would poison every statistic of its lead; treat it as a dropout.
    return np.where(np.isfinite(x), x, 0.0)


def _n(ms: float, fs: float) -> int:
    """Milliseconds to a sample count of at least 1."""
    return max(1, int(round(ms * fs / 1000.0)))


def _amplitude_stats(x: np.ndarray) -> np.ndarray:
    """[B, L, T] -> [B, L, 9] mean, std, min, max, ptp, skew, kurtosis, p05, p95."""
    mean = x.mean(axis=-1)
    c = x - mean[..., None]
    c2 = c * c
    m2 = c2.mean(axis=-1)
    m3 = (c2 * c).mean(axis=-1)
    m4 = (c2 * c2).mean(axis=-1)
    flat = m2 <= _TINY
    safe = np.where(flat, 1.0, m2)
    # Moments of a flat line are undefined; 0 is the value of a symmetric, normal-tailed lead.
    skew = np.where(flat, 0.0, m3 / safe ** 1.5)
    kurt = np.where(flat, 0.0, m4 / safe ** 2 - 3.0)
    lo, hi = x.min(axis=-1), x.max(axis=-1)
    p05, p95 = np.percentile(x, [5.0, 95.0], axis=-1)
    return np.stack([mean, np.sqrt(m2), lo, hi, hi - lo, skew, kurt, p05, p95], axis=-1)


def _spectral_features(x: np.ndarray, fs: float) -> np.ndarray:
    """[B, L, T] -> [B, L, 5] relative band powers, mains fraction and log10 total power."""
    n_rec, n_leads, n_t = x.shape
    out = np.zeros((n_rec, n_leads, len(SPECTRAL_FEATURES)))
    if n_t < 8:
        out[..., -1] = np.log10(_TINY)
        return out
    # 4 s segments give 0.25 Hz bins, fine enough to isolate the mains line and 0.5-4 Hz.
    nperseg = int(min(n_t, round(4.0 * fs)))
    freqs, psd = signal.welch(x, fs=fs, nperseg=nperseg, axis=-1)
    df = freqs[1] - freqs[0] if len(freqs) > 1 else 1.0
    total = psd[..., freqs >= 0.5].sum(axis=-1)
    safe = np.where(total > _TINY, total, 1.0)
    has_power = total > _TINY
    for i, (lo, hi) in enumerate(_BANDS_HZ):
        band = psd[..., (freqs >= lo) & (freqs < hi)].sum(axis=-1)
        out[..., i] = np.where(has_power, band / safe, 0.0)
    # Bins above Nyquist simply do not exist, so low-rate records get 0 for missing bands.
    mains = np.zeros(len(freqs), dtype=bool)
    for f0 in _MAINS_HZ:
        mains |= np.abs(freqs - f0) <= _MAINS_HALF_WIDTH_HZ
    out[..., 3] = np.where(has_power, psd[..., mains].sum(axis=-1) / safe, 0.0)
    out[..., 4] = np.log10(total * df + _TINY)
    return out


@lru_cache(maxsize=32)
def _bandpass_sos(fs: float, lo: float, hi: float) -> np.ndarray | None:
    """Second-order Butterworth band-pass clipped below Nyquist; None when no band fits."""
    hi = min(hi, 0.45 * fs)
    lo = min(lo, hi / 3.0)
    if lo <= 0 or hi <= lo:
        return None
    return signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")


@lru_cache(maxsize=32)
def _template_sos(fs: float, highpass: bool) -> np.ndarray | None:
    """40 Hz low-pass, 50/60 Hz notches and optionally a 1 Hz high-pass, cascaded."""
    cutoff = min(40.0, 0.45 * fs)
    if cutoff <= 0:
        return None
    sections = [signal.butter(4, cutoff, btype="lowpass", fs=fs, output="sos")]
    for f0 in _MAINS_HZ:
        if f0 < 0.45 * fs:
            sections.append(signal.tf2sos(*signal.iirnotch(f0, 30.0, fs=fs)))
    if highpass and cutoff > 4.0:
        sections.append(signal.butter(2, 1.0, btype="highpass", fs=fs, output="sos"))
    return np.concatenate(sections)


def _smooth_template(tmpl: np.ndarray, fs: float, highpass: bool = False) -> np.ndarray:
    """Zero-phase filtering of [L, W] templates; unchanged when too short to filter."""
    sos = _template_sos(fs, highpass)
    if sos is None or tmpl.shape[-1] <= 3 * (2 * len(sos) + 1):
        return tmpl
    return signal.sosfiltfilt(sos, tmpl, axis=-1)


def _filtfilt(sos: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """Zero-phase filter along the last axis; too-short signals are only mean-removed."""
    padlen = 3 * (2 * len(sos) + 1) if sos is not None else 0
    if sos is None or x.shape[-1] <= padlen:
        return x - x.mean(axis=-1, keepdims=True)
    return signal.sosfiltfilt(sos, x, axis=-1)


def _qrs_energy(x: np.ndarray, fs: float) -> np.ndarray:
    """[B, L, T] -> [B, T] summed squared slope of the 5-15 Hz band, where QRS energy lives."""
    band = _filtfilt(_bandpass_sos(fs, 5.0, 15.0), x)
    slope = np.diff(band, axis=-1, prepend=band[..., :1]) * fs
    return np.einsum("blt,blt->bt", slope, slope)


def _detect_r_peaks(energy: np.ndarray, fs: float) -> np.ndarray:
    """Pan-Tompkins-like detection on one record's QRS energy; sorted QRS fiducial indices."""
    n_t = len(energy)
    refractory = _n(200, fs)
    if n_t < 3 * refractory:
        return np.zeros(0, dtype=np.int64)
    # Centred integration so the window peak sits on the QRS rather than 75 ms after it.
    mwi = uniform_filter1d(energy, size=_n(150, fs), mode="nearest")
    cands, _ = signal.find_peaks(mwi, distance=refractory)
    if len(cands) == 0:
        return np.zeros(0, dtype=np.int64)
    heights = mwi[cands]
    # Median of the top few (>= 30 bpm) ignores a couple of artefact spikes when seeding the level.
    k = max(1, min(len(cands), int(n_t / fs / 2.0)))
    spk = float(np.median(np.sort(heights)[-k:]))
    if spk <= 1e-9:
        return np.zeros(0, dtype=np.int64)
    npk = float(np.median(mwi))
    fiducial, slope_peak = _refine_peaks(energy, cands, _n(75, fs))
    accepted, thresholds = _adaptive_pass(cands, heights, slope_peak, spk, npk, fs)
    accepted = _search_back(cands, heights, thresholds, accepted, fs)
    return np.unique(fiducial[accepted])


def _refine_peaks(energy: np.ndarray, cands: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy centroid (the beat fiducial) and peak energy within +-half samples of each candidate."""
    padded = np.pad(energy, half, mode="constant")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)[cands]
    # The up- and downstroke give two energy lobes of near-equal height; an argmax would hop
    # between them from beat to beat and blur the median beat, the centroid does not.
    mass = windows.sum(axis=1)
    offsets = np.arange(-half, half + 1)
    shift = np.where(mass > 0, windows @ offsets / np.where(mass > 0, mass, 1.0), 0.0)
    fid = np.clip(cands + np.rint(shift).astype(np.int64), 0, len(energy) - 1)
    return fid, windows.max(axis=1)


def _adaptive_pass(cands: np.ndarray, heights: np.ndarray, slope_peak: np.ndarray,
                   spk: float, npk: float, fs: float) -> tuple[list[int], np.ndarray]:
    """Running signal/noise levels decide each candidate; returns accepted indices and thresholds."""
    t_wave_window = _n(360, fs)
    accepted: list[int] = []
    thresholds = np.empty(len(cands))
    for i, (pos, h) in enumerate(zip(cands, heights)):
        thr = npk + 0.25 * (spk - npk)
        thresholds[i] = thr
        is_qrs = h > thr
        if is_qrs and accepted and pos - cands[accepted[-1]] < t_wave_window:
            # Close after a beat and with under half its slope (a quarter of the squared slope):
            # a T wave, as in Pan-Tompkins.
            is_qrs = slope_peak[i] >= 0.25 * slope_peak[accepted[-1]]
        if is_qrs:
            accepted.append(i)
            spk = 0.125 * h + 0.875 * spk
        else:
            npk = 0.125 * h + 0.875 * npk
    return accepted, thresholds


def _search_back(cands: np.ndarray, heights: np.ndarray, thresholds: np.ndarray,
                 accepted: list[int], fs: float) -> list[int]:
    """Recover one beat in each gap over 1.66 median RR with the halved threshold."""
    if len(accepted) < 3:
        return accepted
    pos = cands[accepted]
    rr_med = float(np.median(np.diff(pos)))
    min_gap = _n(250, fs)
    extra = []
    for a, b in zip(accepted[:-1], accepted[1:]):
        if cands[b] - cands[a] <= 1.66 * rr_med:
            continue
        inner = np.arange(a + 1, b)
        inner = inner[(cands[inner] - cands[a] >= min_gap) & (cands[b] - cands[inner] >= min_gap)]
        inner = inner[heights[inner] > 0.5 * thresholds[inner]]
        if len(inner):
            extra.append(int(inner[np.argmax(heights[inner])]))
    return sorted(accepted + extra)


def _rhythm_features(peaks: np.ndarray, fs: float) -> dict[str, float]:
    """Heart rate and RR variability from R peaks; zeros and hr_valid = 0 below two beats."""
    feats = {name: 0.0 for name in GLOBAL_FEATURES}
    feats["n_beats"] = float(len(peaks))
    if len(peaks) < 2:
        return feats
    rr = np.diff(peaks) * (1000.0 / fs)
    rr_mean = float(rr.mean())
    feats.update(rr_mean_ms=rr_mean, hr_bpm=60000.0 / rr_mean, rr_sdnn_ms=float(rr.std()))
    feats["rr_cv"] = feats["rr_sdnn_ms"] / rr_mean
    if len(rr) >= 2:
        d = np.abs(np.diff(rr))
        feats["rr_rmssd_ms"] = float(np.sqrt(np.mean(d * d)))
        feats["rr_pnn50"] = float(np.mean(d > 50.0))
        # Median successive difference shrugs off one ectopic or missed beat but not AF.
        feats["rr_irregularity"] = float(np.median(d)) / rr_mean
        feats["hr_valid"] = float(20.0 <= feats["hr_bpm"] <= 300.0)
    return feats


def _morphology(x: np.ndarray, peaks: np.ndarray, fs: float,
                rr_mean_ms: float) -> tuple[float, float, np.ndarray]:
    """QRS width (ms), beat consistency and per-lead [L, 5] measures on the median beat."""
    n_leads, n_t = x.shape
    pre, post = _n(350, fs), _n(550, fs)
    inside = peaks[(peaks - pre >= 0) & (peaks + post < n_t)]
    if len(inside) == 0:
        return 0.0, 0.0, np.zeros((n_leads, len(MORPHOLOGY_FEATURES)))
    idx = inside[:, None] + np.arange(-pre, post + 1)[None, :]
    beats = x[:, idx]  # [L, n, W]
    # Rough pass: offset-free beats are enough to place the QRS onset for the baseline knots.
    rough = _median_over_beats(beats - beats.mean(axis=-1, keepdims=True))
    onset, _ = _qrs_bounds(_smooth_template(rough, fs, highpass=True), fs, pre)
    beats = beats - _spline_baseline(x, peaks + onset - pre - _n(20, fs), fs, idx)
    pr = _pr_window(onset, fs)
    beats = beats - beats[:, :, pr].mean(axis=-1, keepdims=True)
    raw_tmpl = _median_over_beats(beats)
    # Mains hum survives the median and its slope rivals the R wave's, so measure filtered.
    onset, offset = _qrs_bounds(_smooth_template(raw_tmpl, fs, highpass=True), fs, pre)
    pr = _pr_window(onset, fs)
    raw_tmpl = raw_tmpl - raw_tmpl[:, pr].mean(axis=-1, keepdims=True)
    morph = _measure_template(_smooth_template(raw_tmpl, fs), onset, offset, pre, fs, rr_mean_ms)
    span = slice(max(0, onset - _n(20, fs)), offset + _n(20, fs) + 1)
    consistency = _beat_consistency(beats[:, :, span], raw_tmpl[:, span])
    return (offset - onset) * 1000.0 / fs, consistency, morph


def _pr_window(onset: int, fs: float) -> slice:
    """PR-segment samples 30-10 ms before QRS onset, the isoelectric reference; never empty."""
    start = max(0, onset - _n(30, fs))
    return slice(start, max(start + 1, onset - _n(10, fs)))


def _median_over_beats(beats: np.ndarray) -> np.ndarray:
    """Median over axis 1 of [L, n, W]; sorting the few beats beats np.median's partition 3-5x."""
    ordered = np.sort(beats, axis=1)
    n = beats.shape[1]
    return 0.5 * (ordered[:, (n - 1) // 2] + ordered[:, n // 2])


def _spline_baseline(x: np.ndarray, knots: np.ndarray, fs: float, idx: np.ndarray) -> np.ndarray:
    """Cubic spline through the PR-segment level of every beat, evaluated at idx -> [L, *idx]."""
    half = _n(8, fs)
    knots = knots[(knots - half >= 0) & (knots + half < x.shape[1])]
    if len(knots) == 0:
        return np.zeros((x.shape[0],) + idx.shape)
    level = x[:, knots[:, None] + np.arange(-half, half + 1)[None, :]].mean(axis=-1)  # [L, K]
    if len(knots) == 1:
        return np.broadcast_to(level[:, :1, None], (x.shape[0],) + idx.shape)
    # Held flat beyond the end knots: a cubic would swing wildly when extrapolated.
    where = np.clip(idx, knots[0], knots[-1])
    return CubicSpline(knots, level, axis=1, bc_type="natural")(where)


def _measure_template(tmpl: np.ndarray, onset: int, offset: int, centre: int, fs: float,
                      rr_mean_ms: float) -> np.ndarray:
    """Per-lead R, S, P, ST and T amplitudes (mV) of a baseline-referenced [L, W] median beat."""
    morph = np.zeros((tmpl.shape[0], len(MORPHOLOGY_FEATURES)))
    qrs = tmpl[:, onset:offset + 1]
    morph[:, 0] = np.maximum(qrs.max(axis=1), 0.0)
    morph[:, 1] = np.minimum(qrs.min(axis=1), 0.0)
    rr = rr_mean_ms if rr_mean_ms > 0 else 1000.0
    # Half an RR back keeps the previous beat's T wave out of the P window except at fast rates.
    p_start = max(0, onset - _n(240, fs), centre - _n(0.5 * rr, fs))
    morph[:, 2] = _signed_extreme(tmpl[:, p_start:max(p_start, onset - _n(30, fs))])
    # J+60..80 ms at 60 bpm, shortened like QT (Bazett) so fast rates do not sample the T upslope.
    st_ms = 70.0 * float(np.sqrt(np.clip(rr, 300.0, 1500.0) / 1000.0))
    st = tmpl[:, offset + _n(st_ms - 10.0, fs):offset + _n(st_ms + 10.0, fs) + 1]
    morph[:, 3] = st.mean(axis=1) if st.shape[1] else 0.0
    t_end = centre + _n(float(np.clip(0.7 * rr, 250.0, 500.0)), fs)
    morph[:, 4] = _signed_extreme(tmpl[:, offset + _n(60, fs):t_end + 1])
    return morph


def _qrs_bounds(tmpl: np.ndarray, fs: float, centre: int) -> tuple[int, int]:
    """QRS onset/offset: the run of high spatial velocity around its peak near the R fiducial."""
    velocity = np.sqrt(np.sum(np.gradient(tmpl, axis=-1) ** 2, axis=0)) * fs
    velocity = uniform_filter1d(velocity, size=_n(10, fs), mode="nearest")
    lo = max(0, centre - _n(150, fs))
    hi = min(len(velocity), centre + _n(200, fs) + 1)
    seg = velocity[lo:hi]
    peak = int(seg.argmax()) if len(seg) else 0
    if len(seg) == 0 or seg[peak] <= _TINY:
        return centre - _n(40, fs), centre + _n(40, fs)
    # Noise raises the whole velocity floor; a low percentile over the beat window tracks it.
    floor = _QRS_NOISE_FACTOR * float(np.percentile(velocity, _QRS_NOISE_PCT))
    thr = min(max(_QRS_VELOCITY_FRACTION * seg[peak], floor), 0.5 * seg[peak])
    above = np.flatnonzero(seg >= thr)
    runs = np.split(above, np.flatnonzero(np.diff(above) > 1) + 1)
    i = j = next(k for k, r in enumerate(runs) if r[0] <= peak <= r[-1])
    # Short dips (Q, R and S apexes) are bridged. After the peak a run must also be steep: at
    # fast rates the T upslope abuts the QRS at ~10% of its slope, while S waves reach 30%+.
    # Before the peak a septal q can be that flat, and the P wave lies beyond the PR gap anyway.
    max_gap, steep = _n(_QRS_MAX_GAP_MS, fs), _QRS_TAIL_FRACTION * seg[peak]
    while i > 0 and runs[i][0] - runs[i - 1][-1] <= max_gap:
        i -= 1
    while j < len(runs) - 1 and runs[j + 1][0] - runs[j][-1] <= max_gap and seg[runs[j + 1]].max() >= steep:
        j += 1
    return lo + int(runs[i][0]), lo + int(runs[j][-1])


def _signed_extreme(seg: np.ndarray) -> np.ndarray:
    """Per-row value of largest magnitude, sign kept (a T wave may be inverted); 0 if empty."""
    if seg.shape[1] == 0:
        return np.zeros(seg.shape[0])
    return seg[np.arange(seg.shape[0]), np.abs(seg).argmax(axis=1)]


def _beat_consistency(beats: np.ndarray, tmpl: np.ndarray) -> float:
    """Mean Pearson correlation of each beat's multi-lead QRS with the median beat."""
    b = beats.transpose(1, 0, 2).reshape(beats.shape[1], -1)
    t = tmpl.ravel()
    b = b - b.mean(axis=1, keepdims=True)
    t = t - t.mean()
    denom = np.linalg.norm(b, axis=1) * np.linalg.norm(t)
    corr = np.where(denom > _TINY, b @ t / np.where(denom > _TINY, denom, 1.0), 0.0)
    return float(corr.mean())
