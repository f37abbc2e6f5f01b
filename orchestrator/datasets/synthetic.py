"""Deterministic synthetic 12-lead ECGs: a 3-D cardiac dipole projected onto the leads; six conditions, four sites.

The generator is the benchmark's embedded default dataset (nothing is downloaded). Physiology in brief:

* The heart is a single time-varying dipole d(t) in body axes x = patient's left, y = inferior (feet), z = anterior.
  Each wave (P, septal Q, R, S, R', T) is an asymmetric Gaussian bump in time times a fixed 3-D direction.
* Nine electrode potentials (RA, LA, LL, V1..V6) are dot products of d(t) with electrode vectors; noise, baseline
  wander and mains are added per electrode, then the 12 leads are derived from the electrodes.  Einthoven and
  Goldberger relations (III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2) therefore hold exactly,
  noise included.
* One beat template per record is stamped at beat times drawn from an RR process (sinus with respiratory sinus
  arrhythmia, or irregularly irregular for AF), so a 10-s record costs a few milliseconds.

Randomness is layered so that records of one patient share morphology (axis, amplitudes, intervals) while each
record draws its own heart rate, condition-specific features and noise.  Every generator is seeded from a fixed-length
integer tuple (tag, seed, crc32(site), index); no global RNG and no ``hash()`` of strings is involved, so output is
bit-identical across calls and processes.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "CONDITIONS",
    "GENERATOR_VERSION",
    "HR_RANGES",
    "LEADS",
    "Site",
    "SITES",
    "SyntheticRecord",
    "SyntheticDataset",
    "generate_record",
]

# Bump whenever a change here alters any generated sample: cached embeddings of the old output are then redone.
GENERATOR_VERSION = "1"
CONDITIONS: tuple[str, ...] = ("NSR", "AF", "SB", "STach", "BBB", "STE")
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Heart-rate sampling ranges (bpm). Sinus ranges sit 2 bpm inside the clinical bounds (NSR 60-100, SB 40-58,
# STach 102-150) so that a rate measured from the waveform never crosses a class boundary.
HR_RANGES: dict[str, tuple[float, float]] = {
    "NSR": (62.0, 98.0),
    "AF": (75.0, 130.0),
    "SB": (42.0, 56.0),
    "STach": (104.0, 148.0),
    "BBB": (62.0, 98.0),
    "STE": (62.0, 98.0),
}

# Seed-domain tags: each kind of randomness gets its own stream so that, e.g., metadata never consumes waveform draws.
_TAG_META = 1
_TAG_DEMOGRAPHICS = 2
_TAG_PATIENT = 3
_TAG_WAVE = 4
_TAG_STANDALONE_PATIENT = 5
_TAG_STANDALONE_WAVE = 6

_SHARED_PATIENT_P = 0.25  # chance that records 2b and 2b+1 of a site belong to one patient
_REPEAT_CONDITION_P = 0.7  # chance that a patient's second record repeats the first record's condition


@dataclass(frozen=True)
class Site:
    """An acquisition site: hardware, environment and case mix of one simulated source dataset."""

    name: str
    sampling_rate_hz: float
    mains_hz: float
    mains_mv: float  # amplitude of mains pickup per electrode
    noise_mv: float  # std of white (EMG/amplifier) noise per electrode
    wander_mv: float  # std of baseline wander per electrode
    gain: float  # amplifier gain error applied to every lead
    prevalence: dict[str, float] = field(hash=False)
    region: str = ""
    mean_age: float = 60.0

    def __post_init__(self) -> None:
        """Reject prevalence tables that do not cover exactly CONDITIONS or do not sum to one."""
        if set(self.prevalence) != set(CONDITIONS):
            raise ValueError(f"site {self.name!r}: prevalence keys must be {CONDITIONS}")
        if abs(sum(self.prevalence.values()) - 1.0) > 1e-9 or min(self.prevalence.values()) <= 0:
            raise ValueError(f"site {self.name!r}: prevalence must be positive and sum to 1")
        if self.mains_hz >= self.sampling_rate_hz / 2:
            raise ValueError(f"site {self.name!r}: mains {self.mains_hz} Hz is above Nyquist")


def _prev(nsr: float, af: float, sb: float, stach: float, bbb: float, ste: float) -> dict[str, float]:
    """Prevalence table in CONDITIONS order."""
    return dict(zip(CONDITIONS, (nsr, af, sb, stach, bbb, ste)))


SITES: dict[str, Site] = {
    # PTB-XL-like: clean recordings, mostly normal.
    "eu": Site(
        "eu", sampling_rate_hz=500.0, mains_hz=50.0, mains_mv=0.010, noise_mv=0.008, wander_mv=0.05, gain=1.00,
        prevalence=_prev(0.50, 0.10, 0.10, 0.10, 0.10, 0.10), region="Europe", mean_age=62.0,
    ),
    # CODE-like: 400 Hz, 60 Hz grid, more wander, lower gain, more AF/BBB/tachycardia.
    "sa": Site(
        "sa", sampling_rate_hz=400.0, mains_hz=60.0, mains_mv=0.040, noise_mv=0.015, wander_mv=0.15, gain=0.90,
        prevalence=_prev(0.35, 0.15, 0.10, 0.15, 0.15, 0.10), region="South America", mean_age=54.0,
    ),
    # INCART-like 257 Hz, 50 Hz grid, noisier, more bradycardia and ST elevation.
    "as": Site(
        "as", sampling_rate_hz=257.0, mains_hz=50.0, mains_mv=0.030, noise_mv=0.025, wander_mv=0.08, gain=1.10,
        prevalence=_prev(0.40, 0.08, 0.17, 0.10, 0.10, 0.15), region="Asia", mean_age=56.0,
    ),
    # US-like: 500 Hz, 60 Hz grid, older cohort with more AF.
    "na": Site(
        "na", sampling_rate_hz=500.0, mains_hz=60.0, mains_mv=0.015, noise_mv=0.012, wander_mv=0.10, gain=1.05,
        prevalence=_prev(0.30, 0.20, 0.10, 0.10, 0.15, 0.15), region="North America", mean_age=64.0,
    ),
}


@dataclass
class SyntheticRecord:
    """One generated record with its labels and demographics."""

    record_id: str
    patient_id: str
    site: str
    condition: str
    signal: np.ndarray  # [12, T] float32, mV
    sampling_rate_hz: float
    leads: tuple[str, ...]
    age: int
    sex: str


# --------------------------------------------------------------------------------------------------- seeding


def _site_key(name: str) -> int:
    """Stable integer for a site name (crc32, unlike hash(), is not randomised per process)."""
    return zlib.crc32(name.encode("utf-8"))


def _rng(tag: int, seed: int, site_key: int, index: int) -> np.random.Generator:
    """Generator for one stream; the key always has four entries because SeedSequence pads short keys with zeros."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    return np.random.default_rng(np.random.SeedSequence([tag, seed, site_key, index]))


def _resolve_site(site: str | Site) -> Site:
    """Site object from a name or the object itself."""
    if isinstance(site, Site):
        return site
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; known: {sorted(SITES)}")
    return SITES[site]


# --------------------------------------------------------------------------------------------------- geometry

_SQ3 = math.sqrt(3.0)
# Limb electrodes in the frontal plane at -150 deg (RA), -30 deg (LA) and 90 deg (LL); 1/sqrt(3) gives leads I, II
# and III unit gain. The three vectors sum to zero, so Wilson's central terminal carries no cardiac signal.
_LIMB = np.array([[-_SQ3 / 2, -0.5, 0.0], [_SQ3 / 2, -0.5, 0.0], [0.0, 1.0, 0.0]]) / _SQ3
# Chest electrodes in the transverse plane (angle from the patient's left towards anterior), with larger gains
# because they sit close to the heart.
_CHEST_ANGLES_DEG = np.array([115.0, 95.0, 75.0, 60.0, 35.0, 10.0])
_CHEST_GAINS = np.array([0.9, 1.2, 1.4, 1.5, 1.4, 1.1])
_CHEST = np.stack(
    [
        _CHEST_GAINS * np.cos(np.radians(_CHEST_ANGLES_DEG)),
        np.zeros(6),
        _CHEST_GAINS * np.sin(np.radians(_CHEST_ANGLES_DEG)),
    ],
    axis=1,
)
_ELECTRODES = np.vstack([_LIMB, _CHEST])  # [9, 3]: RA, LA, LL, V1..V6


def _derive_leads(e: np.ndarray) -> np.ndarray:
    """12 standard leads from 9 electrode rows (RA, LA, LL, V1..V6); works for any trailing shape."""
    ra, la, ll = e[0], e[1], e[2]
    wct = (ra + la + ll) / 3.0
    limb = np.stack(
        [la - ra, ll - ra, ll - la, ra - (la + ll) / 2.0, la - (ra + ll) / 2.0, ll - (ra + la) / 2.0]
    )
    return np.concatenate([limb, e[3:] - wct], axis=0)


_LEAD_VECTORS = _derive_leads(_ELECTRODES)  # [12, 3]: how each lead sees a unit dipole
_TERRITORIES: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
    # Injury current points towards the injured wall: anterior (V2-V3) or inferior.
    "anterior": (("V1", "V2", "V3", "V4"), np.array([0.05, 0.0, 1.0])),
    "inferior": (("II", "III", "aVF"), np.array([0.0, 1.0, 0.0])),
}


def _unit(x: float, y: float, z: float) -> np.ndarray:
    """Unit vector in body axes (x left, y inferior, z anterior)."""
    v = np.array([x, y, z], dtype=float)
    return v / np.linalg.norm(v)


def _rot_y(deg: float) -> np.ndarray:
    """Rotation about the body's vertical axis: models the heart turning clockwise or counter-clockwise."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


# --------------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Morphology:
    """Patient-level beat shape: shared by all records of a patient so patient-level splits matter."""

    axis_deg: float
    rot_deg: float
    q_amp: float
    r_amp: float
    s_amp: float
    t_amp: float
    t_axis_deg: float
    p_amp: float
    p_dur: float
    pr: float
    qrs: float
    qtc: float
    t_sigma: float


def _draw_morphology(rng: np.random.Generator) -> _Morphology:
    """Draw one patient's morphology from physiological ranges."""
    axis = rng.uniform(-15.0, 80.0)
    return _Morphology(
        axis_deg=axis,
        rot_deg=rng.uniform(-15.0, 15.0),
        q_amp=rng.uniform(0.10, 0.30),
        r_amp=rng.uniform(0.9, 1.5),
        s_amp=rng.uniform(0.2, 0.5),
        t_amp=rng.uniform(0.20, 0.45),
        t_axis_deg=axis + rng.uniform(-20.0, 20.0),
        p_amp=rng.uniform(0.12, 0.22),
        p_dur=rng.uniform(0.08, 0.11),
        pr=rng.uniform(0.12, 0.20),
        qrs=rng.uniform(0.080, 0.100),
        qtc=rng.uniform(0.38, 0.44),
        t_sigma=rng.uniform(0.028, 0.042),
    )


@dataclass(frozen=True)
class _Rhythm:
    """Record-level rhythm and condition features."""

    condition: str
    hr: float
    resp_hz: float
    rsa: float  # relative RR modulation by respiration
    bbb_qrs: float  # total QRS duration for BBB (s); 0 otherwise
    rprime_amp: float
    st_mv: float  # ST elevation in the most elevated territory lead before site gain; 0 otherwise
    territory: str


def _draw_rhythm(condition: str, rng: np.random.Generator) -> _Rhythm:
    """Draw heart rate, respiration and condition-specific parameters for one record."""
    lo, hi = HR_RANGES[condition]
    hr = rng.uniform(lo, hi)
    resp_hz = rng.uniform(0.18, 0.33)
    rsa = rng.uniform(0.01, 0.04)
    bbb_qrs = rng.uniform(0.130, 0.160) if condition == "BBB" else 0.0
    rprime = rng.uniform(0.7, 1.1) if condition == "BBB" else 0.0
    # 0.12-0.36 mV before a site gain of 0.9-1.1 keeps the recorded elevation inside 0.1-0.4 mV.
    st_mv = rng.uniform(0.12, 0.36) if condition == "STE" else 0.0
    territory = str(rng.choice(sorted(_TERRITORIES))) if condition == "STE" else ""
    return _Rhythm(condition, hr, resp_hz, rsa, bbb_qrs, rprime, st_mv, territory)


# --------------------------------------------------------------------------------------------------- beat template


def _bump(t: np.ndarray, center: float, sigma_left: float, sigma_right: float) -> np.ndarray:
    """Asymmetric Gaussian: T waves rise slower than they fall."""
    sigma = np.where(t < center, sigma_left, sigma_right)
    return np.exp(-0.5 * ((t - center) / sigma) ** 2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, written with tanh to avoid overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _components(m: _Morphology, r: _Rhythm, rr_mean: float) -> list[tuple[float, float, float, float, np.ndarray]]:
    """Dipole components (center s, sigma_left, sigma_right, amplitude mV, direction) relative to the R peak."""
    rot = _rot_y(m.rot_deg)
    th, tth = math.radians(m.axis_deg), math.radians(m.t_axis_deg)
    q = m.qrs
    wide = r.condition == "BBB"
    w = 1.15 if wide else 1.0  # slower myocardial conduction also broadens the initial QRS
    onset = -0.45 * q
    comps: list[tuple[float, float, float, float, np.ndarray]] = []
    if r.condition != "AF":  # no organised atrial depolarisation in AF
        p_center = onset - m.pr + m.p_dur / 2
        s = m.p_dur / 6
        comps.append((p_center - 0.15 * m.p_dur, s, s, 0.6 * m.p_amp, _unit(0.2, 0.8, 0.5)))  # right atrium
        comps.append((p_center + 0.15 * m.p_dur, s, s, 0.6 * m.p_amp, _unit(0.8, 0.5, -0.4)))  # left atrium
    # Septum depolarises left-to-right and anteriorly: small q in I/V6, small r in V1.
    comps.append((-0.30 * q, 0.07 * q * w, 0.07 * q * w, m.q_amp, _unit(-0.5, 0.2, 0.8)))
    # Free wall: early anterior-left, then posterior-left; together they give R-wave progression V1->V6.
    comps.append((-0.08 * q, 0.10 * q * w, 0.10 * q * w, 0.6 * m.r_amp, _unit(math.cos(th), math.sin(th), 0.6)))
    comps.append((0.06 * q, 0.10 * q * w, 0.10 * q * w, 0.8 * m.r_amp, _unit(math.cos(th), math.sin(th), -0.5)))
    comps.append((0.27 * q, 0.08 * q * w, 0.08 * q * w, m.s_amp * (0.5 if wide else 1.0), _unit(-0.3, -0.7, -0.6)))
    t_dir = _unit(math.cos(tth), math.sin(tth), 0.5)
    extra = 0.0
    if wide:
        # RBBB-like late right-ventricular activation: R' in V1, wide slurred S in I/V6.
        sig = 0.016
        rp_dir = _unit(-0.6, -0.1, 0.8)
        offset = onset + r.bbb_qrs
        comps.append((offset - 2.2 * sig, sig, sig, r.rprime_amp, rp_dir))
        extra = r.bbb_qrs - q
        t_dir = t_dir - 0.7 * rp_dir  # secondary repolarisation change: T inverted in V1-V3
        t_dir = t_dir / np.linalg.norm(t_dir)
    qt = m.qtc * math.sqrt(rr_mean) + extra  # Bazett: QT shortens with rate
    t_peak = onset + qt - 2.0 * m.t_sigma
    t_amp = m.t_amp * (1.2 if r.condition == "STE" else 1.0)  # hyperacute T
    comps.append((t_peak, 1.4 * m.t_sigma, m.t_sigma, t_amp, t_dir))
    return [(c, sl, sr, a, rot @ d) for c, sl, sr, a, d in comps]


def _st_injury(m: _Morphology, r: _Rhythm, t: np.ndarray, rr_mean: float) -> np.ndarray:
    """Injury-current dipole [3, L]: a plateau from the J point to the end of T, aimed at the territory."""
    leads, direction = _TERRITORIES[r.territory]
    d = _rot_y(m.rot_deg) @ (direction / np.linalg.norm(direction))
    idx = [LEADS.index(name) for name in leads]
    # Scale so the most elevated territory lead shows exactly st_mv.
    amp = r.st_mv / float(np.max(_LEAD_VECTORS[idx] @ d))
    onset = -0.45 * m.qrs
    j_point = onset + m.qrs
    t_end = onset + m.qtc * math.sqrt(rr_mean)
    profile = _sigmoid((t - j_point) / 0.004) * _sigmoid((t_end - t) / 0.025)
    return amp * d[:, None] * profile[None, :]


def _template(m: _Morphology, r: _Rhythm, fs: float, rr_mean: float) -> tuple[np.ndarray, int]:
    """One beat of the dipole [3, L] and the sample index of the R peak within it."""
    pre, post = int(round(0.40 * fs)), int(round(0.80 * fs))
    t = np.arange(-pre, post) / fs
    dip = np.zeros((3, t.size))
    for center, sl, sr, amp, direction in _components(m, r, rr_mean):
        dip += amp * direction[:, None] * _bump(t, center, sl, sr)[None, :]
    if r.condition == "STE":
        dip += _st_injury(m, r, t, rr_mean)
    return dip, pre


# --------------------------------------------------------------------------------------------------- rhythm


def _sinus_times(r: _Rhythm, rng: np.random.Generator, start: float, stop: float) -> np.ndarray:
    """Beat times with respiratory sinus arrhythmia and 1 % jitter."""
    rr0 = 60.0 / r.hr
    n = int((stop - start) / (rr0 * (1 - r.rsa - 0.05))) + 2
    approx = start + rr0 * np.arange(n)
    phase = rng.uniform(0, 2 * math.pi)
    rr = rr0 * (1 + r.rsa * np.sin(2 * math.pi * r.resp_hz * approx + phase)) * (1 + 0.01 * rng.standard_normal(n))
    return start + np.concatenate([[0.0], np.cumsum(rr[:-1])])


def _af_times(r: _Rhythm, rng: np.random.Generator, start: float, stop: float) -> np.ndarray:
    """Irregularly irregular beat times: i.i.d. log-normal RR, floored by AV-node refractoriness."""
    rr0 = 60.0 / r.hr
    sigma = rng.uniform(0.20, 0.30)
    n = int((stop - start) / 0.30) + 2
    rr = np.maximum(rr0 * np.exp(sigma * rng.standard_normal(n) - sigma**2 / 2), 0.30)
    return start + np.concatenate([[0.0], np.cumsum(rr[:-1])])


def _beat_times(r: _Rhythm, rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """R-peak times covering the record plus one template length on each side, so edges look continuous."""
    start = -0.8 - rng.uniform(0, 60.0 / r.hr)
    stop = duration_s + 0.4
    times = _af_times(r, rng, start, stop) if r.condition == "AF" else _sinus_times(r, rng, start, stop)
    return times[times < stop]


def _stamp(template: np.ndarray, r_index: int, times: np.ndarray, weights: np.ndarray, fs: float, n: int) -> np.ndarray:
    """Sum weighted copies of the template at the beat times (bincount: fast and order-deterministic)."""
    pos = np.round(times * fs).astype(np.int64)[:, None] + np.arange(template.shape[1])[None, :] - r_index
    valid = (pos >= 0) & (pos < n)
    flat = pos[valid]
    out = np.empty((3, n))
    for k in range(3):
        out[k] = np.bincount(flat, weights=(weights[:, None] * template[k][None, :])[valid], minlength=n)
    return out


def _fibrillation(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Atrial f-waves [3, T]: two frequency-modulated 4-9 Hz sources with wandering amplitude."""
    fs = 1.0 / (t[1] - t[0])
    out = np.zeros((3, t.size))
    for direction in (_unit(0.2, 0.6, 0.8), _unit(0.6, 0.3, -0.3)):
        f0 = rng.uniform(5.0, 8.0)
        freq = f0 + 0.5 * np.sin(2 * math.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * math.pi))
        phase = 2 * math.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * math.pi)
        envelope = rng.uniform(0.03, 0.08) * (1 + 0.3 * np.sin(2 * math.pi * rng.uniform(0.2, 0.5) * t))
        out += direction[:, None] * (envelope * np.sin(phase))[None, :]
    return out


# --------------------------------------------------------------------------------------------------- acquisition


def _acquisition_noise(site: Site, rng: np.random.Generator, t: np.ndarray, resp_hz: float) -> np.ndarray:
    """Per-electrode wander, mains pickup and white noise [9, T]."""
    n_e = _ELECTRODES.shape[0]
    # Wander: respiration plus a slower and a faster drift, with electrode-specific mixing.
    freqs = np.array([resp_hz, rng.uniform(0.05, 0.15), rng.uniform(0.3, 0.6)])
    coef = rng.standard_normal((n_e, 2, freqs.size)) * site.wander_mv / math.sqrt(freqs.size)
    arg = 2 * math.pi * freqs[:, None] * t[None, :]
    sin_b, cos_b = np.sin(arg), np.cos(arg)
    wander = (coef[:, 0, :, None] * sin_b[None] + coef[:, 1, :, None] * cos_b[None]).sum(axis=1)
    # Mains: each electrode couples with its own amplitude and phase (cable routing, electrode impedance), so the
    # interference survives lead subtraction instead of cancelling as pure common mode.
    amp = site.mains_mv * rng.uniform(0.5, 1.5, n_e)
    ph = rng.uniform(0, 2 * math.pi, n_e)
    w = 2 * math.pi * site.mains_hz * t
    mains = (amp * np.cos(ph))[:, None] * np.sin(w)[None, :] + (amp * np.sin(ph))[:, None] * np.cos(w)[None, :]
    white = site.noise_mv * rng.standard_normal((n_e, t.size))
    return wander + mains + white


def _synthesize(
    m: _Morphology, r: _Rhythm, site: Site, rng: np.random.Generator, duration_s: float
) -> np.ndarray:
    """Full pipeline: beats -> dipole -> electrodes (+ noise) -> 12 leads, float32 mV."""
    fs = site.sampling_rate_hz
    n = int(round(duration_s * fs))
    if n < 2:
        raise ValueError("duration too short")
    t = np.arange(n) / fs
    times = _beat_times(r, rng, duration_s)
    rr_mean = float(np.mean(np.diff(times))) if times.size > 1 else 60.0 / r.hr
    template, r_index = _template(m, r, fs, rr_mean)
    # Respiration modulates beat amplitude (chest impedance / heart position) by a few percent.
    weights = 1 + 0.04 * np.sin(2 * math.pi * r.resp_hz * times + rng.uniform(0, 2 * math.pi))
    weights *= 1 + 0.01 * rng.standard_normal(times.size)
    dipole = _stamp(template, r_index, times, weights, fs, n)
    if r.condition == "AF":
        dipole += _fibrillation(rng, t)
    # Explicit broadcasting instead of BLAS matmul keeps the summation order fixed across machines and thread counts.
    electrodes = (_ELECTRODES[:, :, None] * dipole[None, :, :]).sum(axis=1)
    electrodes += _acquisition_noise(site, rng, t, r.resp_hz)
    return (site.gain * _derive_leads(electrodes)).astype(np.float32)


def generate_record(condition: str, site: str | Site, seed: int, duration_s: float = 10.0) -> tuple[np.ndarray, float]:
    """One standalone record: ([12, T] float32 mV, sampling rate), fully determined by the arguments."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; known: {CONDITIONS}")
    s = _resolve_site(site)
    key = _site_key(s.name)
    morph = _draw_morphology(_rng(_TAG_STANDALONE_PATIENT, seed, key, 0))
    rng = _rng(_TAG_STANDALONE_WAVE, seed, key, 0)
    rhythm = _draw_rhythm(condition, rng)
    return _synthesize(morph, rhythm, s, rng, duration_s), s.sampling_rate_hz


# --------------------------------------------------------------------------------------------------- dataset


def _draw_condition(rng: np.random.Generator, site: Site) -> str:
    """One condition drawn from the site's prevalence table."""
    cdf = np.cumsum([site.prevalence[c] for c in CONDITIONS])
    return CONDITIONS[min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(CONDITIONS) - 1)]


class SyntheticDataset:
    """Lazy, index-addressable: record i is generated on demand, deterministically from (seed, site, i)."""

    def __init__(
        self,
        sites: Sequence[str] = ("eu", "sa"),
        records_per_site: int = 200,
        seed: int = 0,
        duration_s: float = 10.0,
    ) -> None:
        """Validate the configuration; nothing is generated until asked."""
        if isinstance(sites, str):
            sites = (sites,)
        self.sites: tuple[Site, ...] = tuple(_resolve_site(s) for s in sites)
        if len({s.name for s in self.sites}) != len(self.sites):
            raise ValueError("duplicate site")
        if records_per_site < 1 or seed < 0 or duration_s <= 0:
            raise ValueError("records_per_site >= 1, seed >= 0 and duration_s > 0 are required")
        self.records_per_site = int(records_per_site)
        self.seed = int(seed)
        self.duration_s = float(duration_s)

    def __len__(self) -> int:
        """Total number of records over all sites."""
        return len(self.sites) * self.records_per_site

    def _locate(self, i: int) -> tuple[Site, int]:
        """Site and within-site index of global record i."""
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.sites[i // self.records_per_site], i % self.records_per_site

    def record_ids(self) -> list[str]:
        """Record ids in index order, e.g. 'eu-000017'."""
        return [f"{s.name}-{j:06d}" for s in self.sites for j in range(self.records_per_site)]

    def _patient(self, site: Site, j: int) -> tuple[int, str]:
        """Patient number of within-site record j and the condition of that record."""
        # Records come in pairs (2b, 2b+1) drawn from one block RNG: with probability 0.25 both belong to patient 2b
        # and the second repeats the first one's condition with probability 0.7, so the marginals still follow the
        # prevalence table. Only (seed, site, j // 2) matters, never records_per_site, so adding records is stable.
        b = j // 2
        rng = _rng(_TAG_META, self.seed, _site_key(site.name), b)
        shared = rng.random() < _SHARED_PATIENT_P
        first, second_own = _draw_condition(rng, site), _draw_condition(rng, site)
        repeat = rng.random() < _REPEAT_CONDITION_P
        if j % 2 == 0:
            return 2 * b, first
        if shared:
            return 2 * b, first if repeat else second_own
        return j, second_own

    def _demographics(self, site: Site, patient: int) -> tuple[int, str]:
        """Age and sex of a patient, from the patient's own stream so both of their records agree."""
        rng = _rng(_TAG_DEMOGRAPHICS, self.seed, _site_key(site.name), patient)
        # Age is tied to the patient's first-record condition: AF patients older, brady/tachy a little younger.
        _, first_condition = self._patient(site, patient)
        shift = {"AF": 10.0, "SB": -5.0, "STach": -5.0}.get(first_condition, 0.0)
        age = int(np.clip(round(rng.normal(site.mean_age + shift, 14.0)), 18, 95))
        sex = "M" if rng.random() < 0.52 else "F"
        return age, sex

    def metadata(self, i: int) -> dict:
        """record_id, patient_id, site, condition, age, sex: cheap, the waveform is not generated."""
        site, j = self._locate(i)
        patient, condition = self._patient(site, j)
        age, sex = self._demographics(site, patient)
        return {
            "record_id": f"{site.name}-{j:06d}",
            "patient_id": f"{site.name}-p{patient:06d}",
            "site": site.name,
            "condition": condition,
            "age": age,
            "sex": sex,
        }

    def load(self, i: int) -> SyntheticRecord:
        """Generate record i (patient morphology from the patient stream, the rest from the record stream)."""
        meta = self.metadata(i)
        site, j = self._locate(i)
        key = _site_key(site.name)
        patient, _ = self._patient(site, j)
        morph = _draw_morphology(_rng(_TAG_PATIENT, self.seed, key, patient))
        rng = _rng(_TAG_WAVE, self.seed, key, j)
        rhythm = _draw_rhythm(meta["condition"], rng)
        signal = _synthesize(morph, rhythm, site, rng, self.duration_s)
        return SyntheticRecord(
            record_id=meta["record_id"],
            patient_id=meta["patient_id"],
            site=site.name,
            condition=meta["condition"],
            signal=signal,
            sampling_rate_hz=site.sampling_rate_hz,
            leads=LEADS,
            age=meta["age"],
            sex=meta["sex"],
        )

    def __getitem__(self, i: int) -> SyntheticRecord:
        """Alias of load(i)."""
        return self.load(i)
