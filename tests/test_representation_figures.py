"""Cross-model figures (services.analysis.figures): CKA heatmap and UMAP grid."""
from __future__ import annotations

import math

import numpy as np
import pytest

from services.analysis import figures, similarity

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_cka_heatmap_is_a_deterministic_png_with_undefined_cells():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 4))
    cka = similarity.cka_matrix({"ECGFounder": base, "random-resnet": rng.normal(size=(60, 8)),
                                 "flat": np.zeros((60, 3))})
    names = ["ECGFounder", "random-resnet", "flat"]
    matrix = figures.cka_matrix_array(names, cka)
    assert matrix.shape == (3, 3) and matrix[0, 0] == pytest.approx(1.0) and math.isnan(matrix[2, 0])
    name, png, caption = figures.similarity_figure(names, cka, "PTB-XL")
    assert name == "similarity/ptb-xl/cka" and png.startswith(PNG_MAGIC) and "CKA" in caption
    assert figures.similarity_figure(names, cka, "PTB-XL")[1] == png


def test_umap_grid_uses_shared_rows_for_every_model():
    rng = np.random.default_rng(1)
    labels = [f"class-{i}" for i in rng.integers(0, 4, 500)]
    projections = {f"model-{m}": (rng.normal(size=(500, 2)), labels) for m in range(4)}
    png = figures.umap_grid(projections, "class", title="PTB-XL", max_points=200, seed=3)
    assert png.startswith(PNG_MAGIC)
    assert figures.umap_grid(projections, "class", title="PTB-XL", max_points=200, seed=3) == png
    rows = figures._shared_rows(projections, 200, 3)
    assert len(rows) == 200 and np.all(np.diff(rows) > 0)


def test_umap_grid_rejects_models_with_different_rows():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="same rows"):
        figures.umap_grid({"a": (rng.normal(size=(10, 2)), ["x"] * 10), "b": (rng.normal(size=(9, 2)), ["x"] * 9)},
                          "source")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        figures.umap_grid({"a": (rng.normal(size=(10, 3)), ["x"] * 10)}, "source")
    with pytest.raises(ValueError, match="no models"):
        figures.umap_grid({}, "source")
