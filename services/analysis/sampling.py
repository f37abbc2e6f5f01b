"""How many rows (or pairs) each analysis used at N rows: the caps and seeded subsamples, as results.json reports them.

Every cap lives next to the code that applies it; this module only reads them, so a report can say
"silhouette on 2,000 of 100,000 ECGs" instead of letting a label claim more than the number means.
The counts are exact functions of N (and of the labels, for same-class pairs): each subsample is a
seeded, deterministic draw of exactly that many rows. Analyses not listed here use every row:
linear CKA (feature-space formula), linear SHAP (every test ECG, in chunks), effective rank /
participation ratio and site separability.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from services.analysis import alignment, core, neighbourhood, umap_selection


def umap_rows(n: int, grid: bool) -> dict[str, int]:
    """Rows behind a UMAP entry: `fit` (the rest transformed onto it), `silhouette`, `trustworthiness`, `grid`."""
    used = {"fit": min(n, core.UMAP_FIT_SAMPLE), "silhouette": min(n, core.SILHOUETTE_SAMPLE),
            "trustworthiness": min(n, core.TRUSTWORTHINESS_SAMPLE)}
    if grid:
        used["grid"] = min(n, umap_selection.GRID_SAMPLE)
    return used


def selection_rows(n: int) -> dict[str, int]:
    """Rows behind a grid selection on its own (the top-k SHAP UMAP): `grid` and the silhouette's rows within it."""
    rows = min(n, umap_selection.GRID_SAMPLE)
    return {"grid": rows, "silhouette": min(rows, core.SILHOUETTE_SAMPLE)}


def structure_rows(labels: Sequence, projection: bool) -> dict[str, int]:
    """Rows / pairs behind the structure metrics of N = len(labels) rows."""
    n = len(labels)
    _, counts = np.unique(np.asarray([str(v) for v in labels], dtype=object), return_counts=True)
    same = int(np.sum(counts * (counts - 1) // 2))
    used = {"knn_queries": min(n, neighbourhood.KNN_QUERY_SAMPLE),
            "uniformity_pairs": min(n * (n - 1) // 2, alignment.MAX_PAIRS),
            "alignment_pairs": min(same, alignment.MAX_PAIRS)}
    if projection:
        used["continuity"] = min(n, neighbourhood.PRESERVATION_SAMPLE)
    return used
