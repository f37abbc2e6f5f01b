"""Matplotlib figures to PNG bytes, the one way every ECGLens figure is rendered."""
from __future__ import annotations

import io
from typing import Any


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib Figure, without pyplot (thread-safe) and without a Software stamp (deterministic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()
