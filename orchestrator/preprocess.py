"""Preprocessing driven by a model card: units, leads by name, resampling, window. Declared and hashed.

Per-lead normalisation is the model package's own step and runs inside its server (the card's
`normalization`), so every client of an endpoint gets the same embedding for the same ECG.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from orchestrator.datasets.base import Record, RecordError

CANONICAL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_ALIASES = {"di": "I", "dii": "II", "diii": "III", "mlii": "II"}
_BY_LOWER = {name.lower(): name for name in CANONICAL_LEADS}
_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a stored record into a wire ECG for one model."""

    sampling_rate_hz: float
    leads: tuple[str, ...]
    num_samples: int
    units: str = "mV"
    window: str = "start"  # which part of a longer record: the first num_samples samples
    pad: str = "zeros"  # how a shorter record is completed

    def describe(self) -> dict:
        """The declared pipeline, as recorded in results.json."""
        return {**asdict(self), "leads": list(self.leads),
                "steps": ["units->" + self.units, "leads by name (I/II-derived limb leads allowed)",
                          "polyphase resampling", f"window={self.window}", f"pad={self.pad}",
                          "normalisation: by the model server (card)"]}

    @property
    def hash(self) -> str:
        """Stable digest of the pipeline; part of every cache key."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]


def canonical_lead(name: str) -> str:
    """Map lead-name spellings (DII, avr, v1) onto the canonical names; unknown names pass through."""
    key = name.strip().lower()
    return _ALIASES.get(key) or _BY_LOWER.get(key) or name.strip()


def select_leads(signal: np.ndarray, leads: tuple[str, ...], wanted: tuple[str, ...], record_id: str) -> np.ndarray:
    """Rows of `signal` in the wanted order, deriving III/aVR/aVL/aVF from I and II when absent."""
    have = {canonical_lead(n): k for k, n in enumerate(leads)}
    derived = {}
    if "I" in have and "II" in have:
        lead_i, lead_ii = signal[have["I"]], signal[have["II"]]
        derived = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
                   "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    rows = []
    for name in (canonical_lead(w) for w in wanted):
        if name in have:
            rows.append(signal[have[name]])
        elif name in derived:
            rows.append(derived[name])
        else:
            raise RecordError(f"{record_id}: lead {name} is missing (record has {', '.join(leads)})")
    return np.stack(rows)


def resample(signal: np.ndarray, source_hz: float, target_hz: float) -> np.ndarray:
    """Polyphase resampling along time (anti-aliased), exact for rational rate ratios."""
    if abs(source_hz - target_hz) < 1e-9:
        return signal
    ratio = Fraction(target_hz / source_hz).limit_denominator(2000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)


def fit_window(signal: np.ndarray, num_samples: int) -> np.ndarray:
    """Crop to the first num_samples or zero-pad at the end."""
    if signal.shape[-1] >= num_samples:
        return signal[..., :num_samples]
    return np.pad(signal, ((0, 0), (0, num_samples - signal.shape[-1])))


def preprocess(record: Record, spec: PreprocessSpec) -> np.ndarray:
    """A stored record to a [leads, samples] float32 wire ECG in spec; raise RecordError when unusable."""
    signal = np.asarray(record.signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(record.leads):
        raise RecordError(f"{record.record_id}: signal shape {list(signal.shape)} does not match "
                          f"{len(record.leads)} leads")
    if signal.shape[1] == 0:
        raise RecordError(f"{record.record_id}: signal is empty")
    if not np.isfinite(signal).all():
        bad = int((~np.isfinite(signal)).sum())
        raise RecordError(f"{record.record_id}: {bad} NaN/Inf sample(s)")
    scale = _UNIT_SCALE_TO_MV.get(record.units.lower())
    if scale is None:
        raise RecordError(f"{record.record_id}: unknown units {record.units!r}")
    signal = select_leads(signal * scale / _UNIT_SCALE_TO_MV[spec.units.lower()], record.leads, spec.leads,
                          record.record_id)
    signal = fit_window(resample(signal, record.sampling_rate_hz, spec.sampling_rate_hz), spec.num_samples)
    return np.ascontiguousarray(signal, dtype=np.float32)


def spec_from_card(card) -> PreprocessSpec:
    """The preprocessing a served model's card (ecglens.v1.ModelCard) asks for."""
    return PreprocessSpec(float(card.sampling_rate_hz), tuple(card.leads), int(card.num_samples),
                          card.input_units or "mV")
