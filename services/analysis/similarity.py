"""Similarity between models' representations of the same records: linear CKA."""
from __future__ import annotations

import itertools
from typing import Mapping

import numpy as np

from services.analysis.inputs import as_matrix


def _centred_unit(x: np.ndarray) -> np.ndarray | None:
    """Column-centred x scaled to unit Frobenius norm (CKA is scale-invariant); None if constant."""
    xc = x - x.mean(axis=0)
    norm = np.linalg.norm(xc)
    return None if norm == 0 else xc / norm


def _cka_centred(xc: np.ndarray, yc: np.ndarray, x_self: float, y_self: float) -> float:
    """||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) given the two self terms."""
    cross = yc.T @ xc
    return float(np.sum(cross * cross) / (x_self * y_self))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float | None:
    """Linear CKA (Kornblith et al. 2019) of row-aligned x [N, Dx] and y [N, Dy]; None if either is constant."""
    x = as_matrix(x, "x", min_rows=2)
    y = as_matrix(y, "y", min_rows=2)
    if len(x) != len(y):
        raise ValueError(f"y: has {len(y)} rows but x has {len(x)}; CKA needs row-aligned matrices")
    xc, yc = _centred_unit(x), _centred_unit(y)
    if xc is None or yc is None:
        return None
    return _cka_centred(xc, yc, float(np.linalg.norm(xc.T @ xc)), float(np.linalg.norm(yc.T @ yc)))


def cka_matrix(embeddings: Mapping[str, np.ndarray]) -> dict[tuple[str, str], float | None]:
    """Linear CKA of every ordered pair (a, b) of row-aligned models, a == b included (symmetric)."""
    if not embeddings:
        raise ValueError("embeddings: no models given")
    arrays = {name: as_matrix(x, f"embeddings[{name!r}]", min_rows=2) for name, x in embeddings.items()}
    n_rows = {name: len(x) for name, x in arrays.items()}
    if len(set(n_rows.values())) != 1:
        raise ValueError(f"embeddings: models must have the same rows (aligned records); got row counts {n_rows}")
    # Centre, normalise and compute each self term once; each unordered pair costs one Dy x Dx product.
    centred = {name: _centred_unit(x) for name, x in arrays.items()}
    self_norm = {name: float(np.linalg.norm(c.T @ c)) for name, c in centred.items() if c is not None}
    out: dict[tuple[str, str], float | None] = {}
    for a, b in itertools.combinations_with_replacement(list(arrays), 2):
        ca, cb = centred[a], centred[b]
        value = None if ca is None or cb is None else _cka_centred(ca, cb, self_norm[a], self_norm[b])
        out[(a, b)] = out[(b, a)] = value
    return out
