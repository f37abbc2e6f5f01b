"""Real-world ECG corruptions as pure numpy functions, at graded severities, deterministic per record.

Every perturbation maps a record's signal x [L, T] (in mV, at its own rate fs, lead names `leads`) to a new
array of the same shape; the input is never modified. t = n / fs is the time of sample n, x_l the lead l row,
rms_l = sqrt(mean_n (x_l[n] - mean(x_l))^2) its AC root mean square. Random draws come from the Generator
passed in, which `record_rng` seeds from (seed, record id, perturbation, grade), so a record gets the same
corruption whichever batch, process or host reads it. At its `identity` parameter each function returns
its input unchanged (tests/test_robustness.py checks it), which is how a run measures its own noise floor.

| name            | parameter (unit)    | x' =                                                              | grades 1, 2, 3 |
|-----------------|---------------------|-------------------------------------------------------------------|----------------|
| gaussian_noise  | SNR (dB)            | x_l + sigma_l e,  sigma_l = rms_l 10^(-SNR/20),  e ~ N(0, 1) iid  | 20, 10, 0      |
| baseline_wander | amplitude A (mV)    | x_l + A sin(2 pi f t + phi_l),  f ~ U(0.1, 0.5) Hz, phi_l ~ U(0, 2 pi) | 0.1, 0.5, 1.0 |
| powerline_50hz  | amplitude A (mV)    | x_l + A sin(2 pi 50 t + phi_l)                                    | 0.05, 0.2, 0.5 |
| powerline_60hz  | amplitude A (mV)    | x_l + A sin(2 pi 60 t + phi_l)                                    | 0.05, 0.2, 0.5 |
| electrode_motion| amplitude A (mV)    | x_l + A b_l(t): one burst per started 5 s, see `electrode_motion` | 0.2, 0.5, 1.0  |
| lead_dropout    | leads k             | x with k leads (drawn without replacement) set to 0               | 1, 3, 6        |
| limb_reversal   | electrode pair      | leads remapped as the swapped limb electrodes dictate (below)    | LA/RA, LA/LL, RA/LL |
| amplitude_scale | gain g              | g x                                                               | 1.5, 2, 4      |
| time_shift      | shift s (s)         | x[(n + round(s fs)) mod T]  (the recording starts s later, wrapped) | 0.25, 1, 2.5 |
| identity        | none                | x  (the served path's own noise floor)                            | 0 only         |
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Part of every perturbed record's content token: a change to any formula here re-embeds cached perturbations.
PERTURBATIONS_VERSION = "1"

Signal = np.ndarray
PerturbFn = Callable[[Signal, float, tuple[str, ...], float, np.random.Generator], Signal]


def record_rng(seed: int, record_id: str, name: str, grade: int) -> np.random.Generator:
    """The Generator of one (record, perturbation, grade): crc32 keeps it stable across processes."""
    return np.random.default_rng([int(seed) % 2**32, zlib.crc32(record_id.encode()), zlib.crc32(name.encode()),
                                  int(grade)])


def _rms(x: Signal) -> np.ndarray:
    """AC RMS per lead, [L, 1]."""
    return np.sqrt(np.mean((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1, keepdims=True))


def _time(x: Signal, fs: float) -> np.ndarray:
    return np.arange(x.shape[1]) / float(fs)


def gaussian_noise(x: Signal, fs: float, leads: tuple[str, ...], snr_db: float, rng: np.random.Generator) -> Signal:
    """x_l + sigma_l e with sigma_l = rms_l 10^(-SNR/20), e ~ N(0, 1) iid: white noise at a per-lead SNR (dB)."""
    if np.isinf(snr_db):
        return x.copy()
    return x + _rms(x) * 10 ** (-snr_db / 20) * rng.standard_normal(x.shape)


def baseline_wander(x: Signal, fs: float, leads: tuple[str, ...], amplitude: float,
                    rng: np.random.Generator) -> Signal:
    """x_l + A sin(2 pi f t + phi_l), f ~ U(0.1, 0.5) Hz (breathing-like), phi_l ~ U(0, 2 pi) per lead."""
    if amplitude == 0:
        return x.copy()
    f = rng.uniform(0.1, 0.5)
    phase = rng.uniform(0, 2 * np.pi, (x.shape[0], 1))
    return x + amplitude * np.sin(2 * np.pi * f * _time(x, fs)[None, :] + phase)


def _powerline(hz: float) -> PerturbFn:
    def powerline(x: Signal, fs: float, leads: tuple[str, ...], amplitude: float, rng: np.random.Generator) -> Signal:
        """x_l + A sin(2 pi f_mains t + phi_l), phi_l ~ U(0, 2 pi) per lead: mains interference."""
        if amplitude == 0:
            return x.copy()
        phase = rng.uniform(0, 2 * np.pi, (x.shape[0], 1))
        return x + amplitude * np.sin(2 * np.pi * hz * _time(x, fs)[None, :] + phase)

    return powerline


def electrode_motion(x: Signal, fs: float, leads: tuple[str, ...], amplitude: float,
                     rng: np.random.Generator) -> Signal:
    """x_l + A b_l(t): ceil(T / 5 s) bursts, each of duration d ~ U(0.3, 1) s at a uniform start (shared by the
    leads); inside a burst b_l = hann(t) n_l(t) / max|n_l|, n_l white noise smoothed by a 50 ms moving average
    (energy below ~10 Hz, overlapping the QRS band as electrode-motion artefact does), 0 elsewhere."""
    if amplitude == 0:
        return x.copy()
    n_leads, n = x.shape
    out = x.copy()
    width = max(1, int(round(0.05 * fs)))
    kernel = np.ones(width) / width
    for _ in range(int(np.ceil(n / fs / 5.0))):
        length = min(n, max(2, int(round(rng.uniform(0.3, 1.0) * fs))))
        start = int(rng.integers(0, n - length + 1))
        window = np.hanning(length)
        for lead in range(n_leads):
            noise = np.convolve(rng.standard_normal(length + width), kernel, mode="valid")[:length]
            peak = np.max(np.abs(noise)) or 1.0
            out[lead, start:start + length] += amplitude * window * noise / peak
    return out


def lead_dropout(x: Signal, fs: float, leads: tuple[str, ...], k: float, rng: np.random.Generator) -> Signal:
    """x with k leads, drawn uniformly without replacement, set to 0 (a disconnected electrode's flat line)."""
    out = x.copy()
    count = min(int(k), x.shape[0])
    if count:
        out[rng.choice(x.shape[0], size=count, replace=False)] = 0.0
    return out


# Swapping two limb electrodes remaps the limb leads (Einthoven / Goldberger); the precordial leads are unchanged
# because Wilson's central terminal is the mean of the three limb electrodes, symmetric in them.
#   LA/RA: I' = -I,   II' = III,  III' = II,   aVR' = aVL, aVL' = aVR, aVF' = aVF
#   LA/LL: I' = II,   II' = I,    III' = -III, aVR' = aVR, aVL' = aVF, aVF' = aVL
#   RA/LL: I' = -III, II' = -II,  III' = -I,   aVR' = aVF, aVL' = aVL, aVF' = aVR
REVERSALS: dict[int, tuple[str, dict[str, tuple[float, str]]]] = {
    1: ("LA/RA", {"I": (-1, "I"), "II": (1, "III"), "III": (1, "II"), "AVR": (1, "AVL"), "AVL": (1, "AVR")}),
    2: ("LA/LL", {"I": (1, "II"), "II": (1, "I"), "III": (-1, "III"), "AVL": (1, "AVF"), "AVF": (1, "AVL")}),
    3: ("RA/LL", {"I": (-1, "III"), "II": (-1, "II"), "III": (-1, "I"), "AVR": (1, "AVF"), "AVF": (1, "AVR")}),
}


def limb_reversal(x: Signal, fs: float, leads: tuple[str, ...], kind: float, rng: np.random.Generator) -> Signal:
    """The limb leads as recorded with two limb electrodes swapped (REVERSALS: 1 LA/RA, 2 LA/LL, 3 RA/LL); a lead
    whose source lead the record lacks is left as it is; kind 0 is no reversal."""
    out = x.copy()
    if int(kind) == 0:
        return out
    row = {name.upper(): k for k, name in enumerate(leads)}
    for target, (sign, source) in REVERSALS[int(kind)][1].items():
        if target in row and source in row:
            out[row[target]] = sign * x[row[source]]
    return out


def amplitude_scale(x: Signal, fs: float, leads: tuple[str, ...], gain: float, rng: np.random.Generator) -> Signal:
    """g x: a wrong amplifier gain or calibration."""
    return x * gain


def time_shift(x: Signal, fs: float, leads: tuple[str, ...], seconds: float, rng: np.random.Generator) -> Signal:
    """x[(n + round(s fs)) mod T]: the recording starts s seconds later (wrapped, so the length is kept)."""
    return np.roll(x, -int(round(seconds * fs)), axis=1)


def identity(x: Signal, fs: float, leads: tuple[str, ...], value: float, rng: np.random.Generator) -> Signal:
    """x itself (a copy): through the served path it measures the run's own noise floor."""
    return x.copy()


@dataclass(frozen=True)
class Perturbation:
    """One corruption: its function, its parameter's unit, the parameter at grades 1..3, and its identity value."""

    name: str
    fn: PerturbFn
    unit: str
    levels: tuple[float, ...]
    identity: float

    def value(self, grade: int) -> float:
        """The parameter at a grade (0 = the identity value)."""
        if grade == 0:
            return self.identity
        if not 1 <= grade <= len(self.levels):
            raise ValueError(f"perturbation {self.name}: grade {grade} outside 0..{len(self.levels)}")
        return self.levels[grade - 1]

    def grades(self, wanted: list[int]) -> list[int]:
        """The wanted grades this perturbation has ([0] for the identity, which has no other)."""
        return [g for g in wanted if 1 <= g <= len(self.levels)] if self.levels else [0]

    def label(self, grade: int) -> str:
        """The grade in words, e.g. 'SNR 10 dB', 'LA/RA'."""
        value = self.value(grade)
        if self.name == "limb_reversal":
            return REVERSALS[int(value)][0] if value else "none"
        return "none" if self.name == "identity" else f"{value:g} {self.unit}".strip()

    def apply(self, x: Signal, fs: float, leads: tuple[str, ...], grade: int, rng: np.random.Generator) -> Signal:
        """The perturbed copy of x (float64) at a grade."""
        return self.fn(np.asarray(x, dtype=np.float64), float(fs), tuple(leads), self.value(grade), rng)


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("gaussian_noise", gaussian_noise, "dB SNR", (20.0, 10.0, 0.0), float("inf")),
    Perturbation("baseline_wander", baseline_wander, "mV", (0.1, 0.5, 1.0), 0.0),
    Perturbation("powerline_50hz", _powerline(50.0), "mV", (0.05, 0.2, 0.5), 0.0),
    Perturbation("powerline_60hz", _powerline(60.0), "mV", (0.05, 0.2, 0.5), 0.0),
    Perturbation("electrode_motion", electrode_motion, "mV", (0.2, 0.5, 1.0), 0.0),
    Perturbation("lead_dropout", lead_dropout, "leads", (1.0, 3.0, 6.0), 0.0),
    Perturbation("limb_reversal", limb_reversal, "", (1.0, 2.0, 3.0), 0.0),
    Perturbation("amplitude_scale", amplitude_scale, "x", (1.5, 2.0, 4.0), 1.0),
    Perturbation("time_shift", time_shift, "s", (0.25, 1.0, 2.5), 0.0),
    Perturbation("identity", identity, "", (), 0.0),
)}


def perturb(x: Signal, fs: float, leads: tuple[str, ...], name: str, grade: int, seed: int, record_id: str) -> Signal:
    """Record `record_id`'s signal under perturbation `name` at `grade`, with its own seeded draws."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name].apply(x, fs, leads, grade, record_rng(seed, record_id, name, grade))
