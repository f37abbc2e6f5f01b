"""Cross-model figures: a linear-CKA heatmap and a grid of UMAP panels on shared rows.

matplotlib only (no pyplot), importable without gRPC; PNGs are deterministic byte-for-byte.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from services.analysis.core import _palette, slug
from services.common.figures import figure_png

# Points per UMAP panel; all panels show the same rows so models are compared point for point.
GRID_MAX_POINTS = 3_000
GRID_COLUMNS = 3


def cka_matrix_array(names: Sequence[str], cka: Mapping[tuple[str, str], float | None]) -> np.ndarray:
    """[M, M] matrix of cka[(a, b)] in names order; NaN where undefined (None)."""
    return np.array([[math.nan if cka[(a, b)] is None else float(cka[(a, b)]) for b in names] for a in names])


def cka_heatmap(names: Sequence[str], matrix: np.ndarray, title: str = "") -> bytes:
    """Annotated viridis heatmap of an [M, M] CKA matrix (0..1) with model names as ticks; NaN = 'n/a'."""
    from matplotlib.figure import Figure

    m = len(names)
    side = 2.4 + 0.7 * m
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(m), list(names), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(m), list(names), fontsize=8)
    for i in range(m):
        for j in range(m):
            value = matrix[i, j]
            # Dark text on the bright end of viridis and on masked (blank) cells, white on the dark end.
            colour = "white" if np.isfinite(value) and value <= 0.6 else "black"
            text = f"{value:.2f}" if np.isfinite(value) else "n/a"
            ax.text(j, i, text, ha="center", va="center", fontsize=8 if m <= 8 else 6, color=colour)
    ax.set_title(f"{title + ': ' if title else ''}linear CKA between models", fontsize=11)
    fig.colorbar(image, ax=ax, label="linear CKA", fraction=0.046, pad=0.03)
    return figure_png(fig)


def similarity_figure(names: Sequence[str], cka: Mapping[tuple[str, str], float | None],
                      title: str = "") -> tuple[str, bytes, str]:
    """The CKA heatmap as (name, png, caption)."""
    png = cka_heatmap(names, cka_matrix_array(names, cka), title)
    caption = ("Linear CKA (Kornblith et al. 2019) between the embeddings of each pair of models on the same "
               "records: 1 = the same representation up to rotation and isotropic scaling, 0 = unrelated.")
    return f"similarity/{slug(title or 'models')}/cka", png, caption


def _shared_rows(projections: Mapping[str, tuple[np.ndarray, Sequence[str]]], max_points: int,
                 seed: int) -> np.ndarray:
    """One seeded row subsample used by every panel; ValueError unless all models have the same rows."""
    sizes = {name: len(np.asarray(p)) for name, (p, _) in projections.items()}
    for name, (p, labels) in projections.items():
        if np.asarray(p).ndim != 2 or np.asarray(p).shape[1] != 2 or len(labels) != len(p):
            raise ValueError(f"projections[{name!r}]: expected an [N, 2] projection with N labels")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"projections: models must project the same rows; got row counts {sizes}")
    n = next(iter(sizes.values()))
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(int(seed) % 2**63).choice(n, max_points, replace=False))


def umap_grid(projections: Mapping[str, tuple[np.ndarray, Sequence[str]]], colour_by: str, title: str = "",
              max_points: int = GRID_MAX_POINTS, seed: int = 0) -> bytes:
    """One figure with a UMAP panel per model (model -> (projection [N, 2], labels)) on the same rows."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not projections:
        raise ValueError("projections: no models given")
    rows = _shared_rows(projections, max_points, seed)
    groups = sorted({str(v) for _, labels in projections.values() for v in np.asarray(labels, dtype=object)[rows]})
    # One colour per label across every panel, so a class has the same colour in each model.
    colour = dict(zip(groups, _palette(len(groups))))
    # Beyond 20 labels the palette repeats, so the marker tells them apart (as in core._scatter).
    marker = {g: "osD^v<>"[(i // 20) % 7] for i, g in enumerate(groups)}
    cols = min(GRID_COLUMNS, len(projections))
    nrows = math.ceil(len(projections) / cols)
    fig = Figure(figsize=(3.6 * cols, 3.4 * nrows + 0.4), layout="tight")
    size = float(np.clip(3000 / max(len(rows), 1), 3, 20))
    for panel, (name, (proj, labels)) in enumerate(projections.items()):
        ax = fig.add_subplot(nrows, cols, panel + 1)
        p, lab = np.asarray(proj)[rows], np.asarray([str(v) for v in np.asarray(labels, dtype=object)[rows]])
        for g in groups:
            mask = lab == g
            ax.scatter(p[mask, 0], p[mask, 1], s=size, alpha=0.7, linewidths=0, color=colour[g], marker=marker[g])
        ax.set_title(str(name), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker=marker[g], linestyle="", color=colour[g], label=g) for g in groups]
    fig.legend(handles=handles, title=colour_by, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               title_fontsize=8, frameon=False, ncol=1 + len(groups) // 25)
    fig.suptitle(f"{title + ': ' if title else ''}UMAP by {colour_by} ({len(rows)} shared records)", fontsize=11)
    return figure_png(fig)
