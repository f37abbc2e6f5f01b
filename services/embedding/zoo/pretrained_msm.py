"""msm-ecg-small: the in-project encoder pre-trained by masked signal modelling (MAE/ST-MEM)."""
from __future__ import annotations

from pathlib import Path

from services.embedding.zoo import ssl_encoder

OBJECTIVE = "masked-signal-modelling"


def build(out_dir: Path) -> dict:
    """Export the shipped weights (weights/msm-ecg-small.pt) to model.onnx and return the card data."""
    return ssl_encoder.build_from_weights(OBJECTIVE, Path(out_dir), __name__)


def describe() -> dict:
    """Zoo listing entry, without building."""
    return ssl_encoder.describe_entry(OBJECTIVE)
