"""The lead-attribution figure: a class x lead heatmap of mean |SHAP|, normalised per class."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from orchestrator.attribution.compute import AttributionResult
from services.common.figures import figure_png


def lead_matrix(result: AttributionResult, class_names: Sequence[str] | None = None,
                leads: Sequence[str] | None = None) -> np.ndarray:
    """[classes, leads] lead importance, each row divided by its maximum (all-zero rows stay zero)."""
    classes, cols = list(class_names or result.class_names), list(leads or result.leads)
    m = np.array([[result.lead_importance[c][lead] for lead in cols] for c in classes], dtype=np.float64)
    peak = m.max(axis=1, keepdims=True) if m.size else m
    return np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)


def lead_heatmap(result: AttributionResult, class_names: Sequence[str] | None = None,
                 leads: Sequence[str] | None = None) -> bytes:
    """PNG: class x lead heatmap of mean |SHAP| (summed over segments), normalised per class, annotated."""
    from matplotlib.figure import Figure

    classes, cols = list(class_names or result.class_names), list(leads or result.leads)
    norm = lead_matrix(result, classes, cols)
    fig = Figure(figsize=(0.55 * len(cols) + 2.4, 0.42 * len(classes) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
    for r in range(norm.shape[0]):
        for c in range(norm.shape[1]):
            ax.text(c, r, f"{norm[r, c]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("lead", fontsize=8)
    model = result.explainer.get("model", "")
    ax.set_title(f"{model}: lead attribution (mean |SHAP|, {result.explainer.get('segments', '?')} segments "
                 f"summed; per-class max = 1)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    return figure_png(fig)
