"""Every structure metric of one model's embeddings at once, and its flat JSON-ready summary.

Pure numpy/scipy/scikit-learn, importable without gRPC (issue #6, §2). The single metrics live in
neighbourhood, separability, spectrum and alignment; this module combines them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.analysis.alignment import AlignmentUniformity, alignment_uniformity
from services.analysis.inputs import DEFAULT_K, as_labels, as_matrix
from services.analysis.neighbourhood import (DEFAULT_KNN_METRIC, KnnAgreement, Preservation, knn_label_agreement,
                                             neighbourhood_preservation)
from services.analysis.separability import DEFAULT_CV_FOLDS, SiteSeparability, site_separability
from services.analysis.spectrum import spectrum


@dataclass
class StructureResult:
    """Every structure metric of one model's embeddings (None: undefined or not requested)."""

    n_rows: int
    knn: KnnAgreement
    site: SiteSeparability | None  # None: fewer than 2 sources
    effective_rank: float
    participation_ratio: float
    alignment_uniformity: AlignmentUniformity
    preservation: Preservation | None  # None: no projection given


def structure_metrics(x: np.ndarray, class_labels: Sequence, sources: Sequence, groups: Sequence | None = None,
                      projection: np.ndarray | None = None, k: int = DEFAULT_K, metric: str = DEFAULT_KNN_METRIC,
                      projection_metric: str = "euclidean", seed: int = 0,
                      cv: int = DEFAULT_CV_FOLDS) -> StructureResult:
    """k-NN agreement, site separability, spectrum, alignment/uniformity and (with a projection) continuity."""
    x = as_matrix(x, "embeddings", min_rows=2)
    as_labels(class_labels, len(x), "class_labels")
    as_labels(sources, len(x), "sources")
    site = site_separability(x, sources, groups, seed, cv) if len(set(map(str, sources))) >= 2 else None
    preservation = None
    if projection is not None:
        preservation = neighbourhood_preservation(x, projection, k, projection_metric, seed)
    rank, ratio = spectrum(x)
    return StructureResult(
        n_rows=len(x), knn=knn_label_agreement(x, class_labels, k, metric, seed), site=site,
        effective_rank=rank, participation_ratio=ratio,
        alignment_uniformity=alignment_uniformity(x, class_labels, seed), preservation=preservation)


def structure_summary(result: StructureResult) -> dict[str, object]:
    """A StructureResult as a flat JSON-ready dict (None = undefined); AnalysisClient.structure returns the same."""
    site, pres, au = result.site, result.preservation, result.alignment_uniformity
    return {
        "n_rows": result.n_rows, "knn_agreement": result.knn.agreement, "knn_chance": result.knn.chance,
        "k": result.knn.k, "metric": result.knn.metric, "knn_per_class": dict(result.knn.per_class),
        "site_separability": None if site is None else site.auroc,
        "site_per_source": {} if site is None else dict(site.per_source),
        "site_cv_folds": 0 if site is None else site.n_folds,
        "effective_rank": result.effective_rank, "participation_ratio": result.participation_ratio,
        "alignment": au.alignment, "uniformity": au.uniformity,
        "trustworthiness": None if pres is None else pres.trustworthiness,
        "continuity": None if pres is None else pres.continuity,
        "projection_k": 0 if pres is None else pres.k, "projection_metric": "" if pres is None else pres.metric,
    }
