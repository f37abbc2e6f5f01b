"""Spectrum of an embedding matrix: effective rank and participation ratio of its centred singular values."""
from __future__ import annotations

import numpy as np

from services.analysis.inputs import as_matrix


def _singular_values(x: np.ndarray) -> np.ndarray:
    """Singular values of the column-centred x (float64)."""
    x = as_matrix(x, "embeddings", min_rows=2)
    return np.linalg.svd(x - x.mean(axis=0), compute_uv=False)


def _effective_rank(s: np.ndarray) -> float:
    """exp(entropy) of singular values normalised to sum 1; 0 for an all-zero spectrum."""
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _participation_ratio(s: np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2 with covariance eigenvalues lambda ~ s^2; 0 for an all-zero spectrum."""
    lam = s * s
    denom = np.sum(lam * lam)
    return 0.0 if denom <= 0 else float(lam.sum() ** 2 / denom)


def effective_rank(x: np.ndarray) -> float:
    """Effective rank (Roy & Vetterli 2007) of the centred x: in [1, min(N, D)], r for r equal singular values."""
    return _effective_rank(_singular_values(x))


def participation_ratio(x: np.ndarray) -> float:
    """Participation ratio (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues: ~D for isotropic data."""
    return _participation_ratio(_singular_values(x))


def spectrum(x: np.ndarray) -> tuple[float, float]:
    """(effective rank, participation ratio) of the centred x from one SVD."""
    s = _singular_values(x)
    return _effective_rank(s), _participation_ratio(s)
