"""Summaries of probe scores: over seeds (`summarise`) and along a label-efficiency curve (pure functions).

Definitions (fractions f_1 < ... < f_m, each in (0, 1], scores s_i; repeated fractions, e.g. one per
seed, are averaged first):

  aulc = (1 / (log10 f_m - log10 f_1)) * integral of s over log10 f from f_1 to f_m, by the
         trapezoidal rule on the given points. It is the mean score over the log-fraction range, so
         it lies in [0, 1] whenever the scores do (AUROC, accuracy, ...) and equals s_1 when m = 1.
         The range is the one given: compare AULCs only between curves over the same fractions.

  fraction_to_95pct = the smallest f_i with s_i >= 0.95 * s_full, where s_full is the score at
         fraction 1.0 (the full training split). None when 1.0 is not among the fractions or
         s_full <= 0 (a relative threshold is meaningless there, e.g. a negative R^2).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

TARGET_SHARE = 0.95


def _curve(fractions: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct fractions, mean score at each); ValueError on bad input."""
    f = np.asarray(list(fractions), dtype=np.float64)
    s = np.asarray(list(scores), dtype=np.float64)
    if f.size == 0 or f.shape != s.shape:
        raise ValueError(f"need as many scores as fractions (at least one), got {f.size} and {s.size}")
    if not (np.all(np.isfinite(f)) and np.all((f > 0) & (f <= 1))):
        raise ValueError(f"fractions must be in (0, 1], got {f.tolist()}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    uniq, inverse = np.unique(f, return_inverse=True)
    means = np.bincount(inverse, weights=s) / np.bincount(inverse)
    return uniq, means


def label_efficiency(fractions: Sequence[float], scores: Sequence[float]) -> dict:
    """{aulc, fraction_to_95pct, full_score, log10_range} of a label-efficiency curve (see module doc)."""
    f, s = _curve(fractions, scores)
    x = np.log10(f)
    width = float(x[-1] - x[0])
    aulc = float(s[0]) if width == 0 else float(np.sum((s[1:] + s[:-1]) / 2 * np.diff(x)) / width)
    full = float(s[-1]) if math.isclose(f[-1], 1.0) else None
    reach = None
    if full is not None and full > 0:
        reach = float(f[np.flatnonzero(s >= TARGET_SHARE * full)[0]])
    return {"aulc": aulc, "fraction_to_95pct": reach, "full_score": full, "log10_range": (float(x[0]), float(x[-1]))}


def summarise(values: Sequence[float]) -> dict:
    """mean, std (ddof=1 when n > 1, else 0), min, max and n of a list of scores."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarise needs at least one value")
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "min": float(arr.min()), "max": float(arr.max()),
            "n": int(arr.size)}
