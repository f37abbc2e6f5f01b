"""Adapt wire ECGs to a model's own input and its raw output to [batch, embedding_dim]."""
from __future__ import annotations

import numpy as np

# Flat leads have zero spread; dividing by it would create Inf, so spreads below this count as flat.
_EPS = 1e-6


def normalize(x: np.ndarray, method: str) -> np.ndarray:
    """Per-record, per-lead normalisation over time of [B, L, T] (so batch-mates never interact)."""
    if method == "none":
        return x
    if method == "zscore":
        mean = x.mean(axis=-1, keepdims=True)
        std = x.std(axis=-1, keepdims=True)
        return ((x - mean) / np.maximum(std, _EPS)).astype(np.float32, copy=False)
    if method == "minmax":
        low = x.min(axis=-1, keepdims=True)
        span = x.max(axis=-1, keepdims=True) - low
        return ((x - low) / np.maximum(span, _EPS)).astype(np.float32, copy=False)
    raise ValueError(f"unknown normalization {method!r}")


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """[B, L, T] wire layout to the model's BLT, BTL or single-lead BT."""
    if layout == "BLT":
        return np.ascontiguousarray(x)
    if layout == "BTL":
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    if layout == "BT":
        return np.ascontiguousarray(x[:, 0, :])
    raise ValueError(f"unknown layout {layout!r}")


def pool(y: np.ndarray, method: str, axis: int) -> np.ndarray:
    """Reduce a model output to [B, D]: none, mean, max, first (token) or flatten."""
    if method == "none":
        out = y
    elif method == "mean":
        out = y.mean(axis=axis)
    elif method == "max":
        out = y.max(axis=axis)
    elif method == "first":
        out = np.take(y, 0, axis=axis)
    elif method == "flatten":
        out = y.reshape(y.shape[0], -1)
    else:
        raise ValueError(f"unknown pooling {method!r}")
    if out.ndim != 2:
        raise ValueError(f"pooling {method!r} over axis {axis} of output shape {list(y.shape)} "
                         f"gives rank {out.ndim}; the embedding must be [batch, dim]")
    return np.ascontiguousarray(out, dtype=np.float32)
