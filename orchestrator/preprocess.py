"""Preprocessing driven by a model card: units, leads by name, resampling, window. Declared and hashed.

Per-lead normalisation is the model package's own step and runs inside its server (the card's
`normalization`), so every client of an endpoint gets the same embedding for the same ECG.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from orchestrator.datasets.base import Record, RecordError
from orchestrator.datasets.header_checks import check_rate

CANONICAL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_ALIASES = {"di": "I", "dii": "II", "diii": "III", "mlii": "II"}
_BY_LOWER = {name.lower(): name for name in CANONICAL_LEADS}
_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


WINDOWS = ("start", "center", "average")
MISSING_LEADS = ("refuse", "zero")
_SCIPY_SIGNAL_LOCK = threading.Lock()


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a stored record into wire ECG windows for one model."""

    sampling_rate_hz: float
    leads: tuple[str, ...]
    num_samples: int
    units: str = "mV"
    window: str = "start"  # start | center | average (mean embedding over consecutive windows)
    max_windows: int = 6  # with window=average: at most this many windows per record
    missing_leads: str = "refuse"  # refuse | zero (zero-filled leads are reported per record)
    highpass_hz: float | None = None  # baseline-wander removal (zero-phase Butterworth)
    lowpass_hz: float | None = None
    notch_hz: tuple[float, ...] = ()  # powerline, e.g. (50.0,) or (60.0,)
    pad: str = "zeros"  # a shorter record is completed with zeros at the end

    def describe(self) -> dict:
        """The declared pipeline, as recorded in results.json."""
        steps = ["units->" + self.units, "leads by name (I/II-derived limb leads allowed; missing: "
                 + self.missing_leads + ")"]
        if self.notch_hz:
            steps.append("notch " + ",".join(f"{f:g}" for f in self.notch_hz) + " Hz")
        if self.highpass_hz or self.lowpass_hz:
            steps.append(f"band-pass {self.highpass_hz or 0:g}-{self.lowpass_hz or 'Nyquist'} Hz (zero-phase)")
        steps += ["polyphase resampling", f"window={self.window}" + (
            f" (up to {self.max_windows})" if self.window == "average" else ""), f"pad={self.pad}",
            "normalisation: by the model server (card)"]
        return {**asdict(self), "leads": list(self.leads), "notch_hz": list(self.notch_hz), "steps": steps}

    @property
    def hash(self) -> str:
        """Stable digest of the pipeline; part of every cache key."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]


def canonical_lead(name: str) -> str:
    """Map lead-name spellings (DII, avr, v1) onto the canonical names; unknown names pass through."""
    key = name.strip().lower()
    return _ALIASES.get(key) or _BY_LOWER.get(key) or name.strip()


def select_leads(signal: np.ndarray, leads: tuple[str, ...], wanted: tuple[str, ...], record_id: str,
                 missing: str = "refuse") -> tuple[np.ndarray, list[str]]:
    """Rows in the wanted order (III/aVR/aVL/aVF derived from I and II when absent) and the zero-filled leads."""
    have = {canonical_lead(n): k for k, n in enumerate(leads)}
    derived = {}
    if "I" in have and "II" in have:
        lead_i, lead_ii = signal[have["I"]], signal[have["II"]]
        derived = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
                   "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    rows, filled = [], []
    for name in (canonical_lead(w) for w in wanted):
        if name in have:
            rows.append(signal[have[name]])
        elif name in derived:
            rows.append(derived[name])
        elif missing == "zero":
            rows.append(np.zeros(signal.shape[1]))
            filled.append(name)
        else:
            raise RecordError(f"{record_id}: lead {name} is missing (record has {', '.join(leads)})")
    if len(filled) == len(wanted):
        raise RecordError(f"{record_id}: none of the model's leads is present (record has {', '.join(leads)})")
    return np.stack(rows), filled


def _scipy_signal():
    """scipy.signal, imported on first use: it costs a process ~1.4 s of CPU (~600 modules), so only processes
    that filter or resample pay it, and one thread at a time (an endpoint worker reads chunks on several
    threads, and two threads importing scipy at once have met a partially initialised module)."""
    with _SCIPY_SIGNAL_LOCK:
        import scipy.signal
    return scipy.signal


def filter_signal(signal: np.ndarray, fs: float, spec: "PreprocessSpec") -> np.ndarray:
    """Optional notch and band-pass filters, zero-phase so waves do not shift in time."""
    nyquist = fs / 2
    notches = [f0 for f0 in spec.notch_hz if f0 < nyquist]
    low = spec.highpass_hz if spec.highpass_hz and spec.highpass_hz < nyquist else None
    high = spec.lowpass_hz if spec.lowpass_hz and spec.lowpass_hz < nyquist else None
    if not (notches or low or high):
        return signal
    sp = _scipy_signal()
    for f0 in notches:
        signal = sp.sosfiltfilt(sp.tf2sos(*sp.iirnotch(f0, 30.0, fs)), signal, axis=-1)
    if low and high:
        signal = sp.sosfiltfilt(sp.butter(2, [low, high], "bandpass", fs=fs, output="sos"), signal, axis=-1)
    elif low:
        signal = sp.sosfiltfilt(sp.butter(2, low, "highpass", fs=fs, output="sos"), signal, axis=-1)
    elif high:
        signal = sp.sosfiltfilt(sp.butter(2, high, "lowpass", fs=fs, output="sos"), signal, axis=-1)
    return signal


def _ratio(source_hz: float, target_hz: float) -> Fraction:
    return Fraction(target_hz / source_hz).limit_denominator(2000)


def resample(signal: np.ndarray, source_hz: float, target_hz: float) -> np.ndarray:
    """Polyphase resampling along time (anti-aliased), exact for rational rate ratios."""
    if abs(source_hz - target_hz) < 1e-9:
        return signal
    ratio = _ratio(source_hz, target_hz)
    return _scipy_signal().resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)


def _window_span(total: int, spec: "PreprocessSpec") -> tuple[int, int]:
    """[start, end) of the output samples windows() keeps from a signal of total output samples."""
    n = spec.num_samples
    if spec.window == "center" and total > n:
        start = (total - n) // 2
        return start, start + n
    if spec.window == "average" and total >= 2 * n:
        return 0, min(total // n, spec.max_windows) * n
    return 0, min(total, n)


def resample_for_windows(signal: np.ndarray, source_hz: float, spec: "PreprocessSpec") -> tuple[np.ndarray, int, int]:
    """(resampled stretch, its first output index, output length of the whole record): only the stretch that
    windows() keeps is resampled, with the resampling filter's reach on each side, so the windows come out
    exactly as from the whole record.

    Memory is bounded by the window, not by the record: a header with a tiny rate (0.05 Hz to 500 Hz is
    x10,000) can no longer make one record cost gigabytes."""
    if abs(source_hz - spec.sampling_rate_hz) < 1e-9:
        return signal, 0, signal.shape[-1]
    ratio = _ratio(source_hz, spec.sampling_rate_hz)
    up, down = ratio.numerator, ratio.denominator
    total = -(-signal.shape[-1] * up // down)  # resample_poly's output length: ceil(len * up / down)
    start, end = _window_span(total, spec)
    # resample_poly's FIR reaches 10 * max(up, down) upsampled samples each side of an output sample.
    reach = -(-10 * max(up, down) // up) + 2
    # Output k sits at input k * down / up: a cut starting at a multiple of `down` keeps outputs aligned.
    begin = max(0, (start * down // up - reach) // down * down)
    stop = min(signal.shape[-1], -(-end * down // up) + reach)
    if begin == 0 and stop == signal.shape[-1]:
        return resample(signal, source_hz, spec.sampling_rate_hz), 0, total
    return resample(signal[..., begin:stop], source_hz, spec.sampling_rate_hz), begin * up // down, total


def fit_window(signal: np.ndarray, num_samples: int) -> np.ndarray:
    """Crop to the first num_samples or zero-pad at the end."""
    if signal.shape[-1] >= num_samples:
        return signal[..., :num_samples]
    return np.pad(signal, ((0, 0), (0, num_samples - signal.shape[-1])))


def windows(signal: np.ndarray, spec: PreprocessSpec, offset: int = 0, total: int | None = None) -> np.ndarray:
    """[n_windows, L, num_samples]: one window (start/center) or consecutive ones to average.

    signal may be a stretch starting at output index offset of a signal of total samples (resample_for_windows)."""
    n = spec.num_samples
    total = signal.shape[-1] + offset if total is None else total
    start, end = _window_span(total, spec)
    kept = signal[:, start - offset:end - offset]
    if spec.window == "average" and end - start >= 2 * n:
        return np.stack([kept[:, k * n:(k + 1) * n] for k in range((end - start) // n)])
    return fit_window(kept, n)[None]


def preprocess_windows(record: Record, spec: PreprocessSpec) -> tuple[np.ndarray, list[str]]:
    """A stored record to [n_windows, leads, samples] float32 wire ECGs and the zero-filled leads."""
    signal = np.asarray(record.signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(record.leads):
        raise RecordError(f"{record.record_id}: signal shape {list(signal.shape)} does not match "
                          f"{len(record.leads)} leads")
    if signal.shape[1] == 0:
        raise RecordError(f"{record.record_id}: signal is empty")
    if not np.isfinite(signal).all():
        bad = int((~np.isfinite(signal)).sum())
        raise RecordError(f"{record.record_id}: {bad} NaN/Inf sample(s)")
    check_rate(float(record.sampling_rate_hz), record.record_id)  # before any allocation scaled by it
    scale = _UNIT_SCALE_TO_MV.get(record.units.lower())
    if scale is None:
        raise RecordError(f"{record.record_id}: unknown units {record.units!r}")
    signal, filled = select_leads(signal * scale / _UNIT_SCALE_TO_MV[spec.units.lower()], record.leads, spec.leads,
                                  record.record_id, spec.missing_leads)
    signal = filter_signal(signal, record.sampling_rate_hz, spec)
    signal, offset, total = resample_for_windows(signal, record.sampling_rate_hz, spec)
    return np.ascontiguousarray(windows(signal, spec, offset, total), dtype=np.float32), filled


def preprocess(record: Record, spec: PreprocessSpec) -> np.ndarray:
    """A stored record to one [leads, samples] float32 wire ECG (the first window)."""
    return preprocess_windows(record, spec)[0][0]


def spec_from_card(card, options: dict | None = None) -> PreprocessSpec:
    """The preprocessing a served model's card (ecglens.v1.ModelCard) asks for, plus experiment options."""
    options = dict(options or {})
    if "notch_hz" in options:
        options["notch_hz"] = tuple(float(f) for f in options["notch_hz"] or ())
    return PreprocessSpec(float(card.sampling_rate_hz), tuple(card.leads), int(card.num_samples),
                          card.input_units or "mV", **options)
