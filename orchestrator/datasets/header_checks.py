"""Plausibility checks on what a record's header declares, before anything is allocated from it.

wfdb's own parser is lenient: a rate it cannot read becomes the WFDB default 250 Hz (`-500` reads as
250), an unreadable sample count becomes None and a gain of 0 becomes 200. These checks read the
header text itself, so a bad field costs its record (RecordError), never memory or a crash.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from orchestrator.datasets.base import RecordError

# ECG is recorded at 100 Hz (PTB-XL low rate) to a few kHz; Holters can be 128 Hz. Far outside this
# window a header is corrupt, and resampling it to a model's rate would allocate without bound.
MIN_RATE_HZ = 25.0
MAX_RATE_HZ = 50_000.0
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def rate_problem(rate: float) -> str | None:
    """Why a sampling rate cannot be used, or None."""
    if not math.isfinite(rate) or rate <= 0:
        return f"sampling rate {rate:g} Hz is not a positive number"
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        return f"sampling rate {rate:g} Hz is implausible for an ECG (expected {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz)"
    return None


def check_rate(rate: float, record: str) -> None:
    """RecordError naming the record unless rate is a plausible ECG sampling rate."""
    problem = rate_problem(rate)
    if problem:
        raise RecordError(f"{record}: {problem}")


def _spec_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def wfdb_header_problem(text: str) -> str | None:
    """What is wrong with a WFDB header's record line or signal gains, or None (fields absent are WFDB defaults)."""
    lines = _spec_lines(text)
    if not lines:
        return "header is empty"
    tokens = lines[0].split()
    multi = "/" in tokens[0]  # name/segments: segment lines follow instead of signal lines
    if len(tokens) < 2 or not tokens[1].isdigit():
        return f"record line {lines[0][:80]!r}: the signal count is not a whole number"
    if len(tokens) > 2:
        rate_text = re.split(r"[/(]", tokens[2], maxsplit=1)[0]
        if not _NUMBER.match(rate_text):
            return f"record line: sampling rate {tokens[2][:40]!r} is not a number"
        problem = rate_problem(float(rate_text))
        if problem:
            return problem
    if len(tokens) > 3 and not tokens[3].isdigit():
        return f"record line: sample count {tokens[3][:40]!r} is not a whole number"
    if multi:
        return None
    for k, line in enumerate(lines[1:1 + int(tokens[1])]):
        fields = line.split()
        if len(fields) < 3:
            continue  # no gain field: WFDB's default gain, a calibrated default
        gain_text = re.split(r"[(/]", fields[2], maxsplit=1)[0]
        if not _NUMBER.match(gain_text):
            return f"signal {k + 1}: gain {fields[2][:40]!r} is not a number"
        gain = float(gain_text)
        if gain == 0 or not math.isfinite(gain):
            return f"signal {k + 1}: ADC gain {gain_text} (uncalibrated: samples cannot be converted to mV)"
    return None


def check_wfdb_header(path: Path, record: str) -> None:
    """RecordError naming the record when the .hea file at path declares an unusable rate, length or gain."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise RecordError(f"{record}: cannot read {path.name}: {err.strerror}") from None
    problem = wfdb_header_problem(text)
    if problem:
        raise RecordError(f"{record}: {path.name}: {problem}")
