"""handcrafted: classical ECG features (amplitudes, band powers, heart rate, R-R variability, QRS width)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from services.embedding.card import ModelCard

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 500.0
NUM_SAMPLES = 5000


class HandcraftedModel:
    """Python-backend model: features of each record on its own, so batching cannot change them."""

    params = 0

    def load(self, card: ModelCard, package_dir: Path) -> None:
        """Remember the input spec the features need."""
        self.fs = card.input.sampling_rate_hz
        self.leads = card.input.leads

    def run(self, x: np.ndarray) -> np.ndarray:
        """[B, L, T] mV -> [B, D] features."""
        from services.embedding.zoo.handcrafted_features import extract_features

        return extract_features(x, self.fs, self.leads)


def _dim() -> int:
    from services.embedding.zoo.handcrafted_features import feature_names

    return len(feature_names(LEADS))


def build(out_dir: Path) -> dict:
    """Write the feature list beside the card and return the card data."""
    from services.embedding.zoo.handcrafted_features import FEATURE_VERSION, feature_names

    (out_dir / "features.txt").write_text("\n".join(feature_names(LEADS)) + "\n")
    return {
        "name": "handcrafted", "version": f"1.0.{FEATURE_VERSION}", "backend": "python", "license": "Apache-2.0",
        "kind": "baseline", "objective": "none (classical signal-processing features)",
        "description": ("Per-lead amplitude statistics, spectral band powers, heart rate and R-R variability, "
                        "QRS width and ST level: the control an FM must beat to be worth its cost."),
        "entry_point": "services.embedding.zoo.handcrafted:HandcraftedModel", "params": 0,
        "input": {"sampling_rate_hz": SAMPLING_RATE_HZ, "leads": list(LEADS), "num_samples": NUM_SAMPLES,
                  "layout": "BLT", "units": "mV", "normalization": "none"},
        "output": {"embedding_dim": _dim(), "pooling": "none"},
        "serving": {"max_batch_size": 32, "max_queue_delay_ms": 2.0, "max_queue_ecgs": 4096},
        "build": {"builder": "services.embedding.zoo.handcrafted", "features": "features.txt"},
    }


def describe() -> dict:
    """Zoo listing entry, without building."""
    from services.embedding.zoo.handcrafted_features import FEATURE_VERSION

    return {"name": "handcrafted", "version": f"1.0.{FEATURE_VERSION}", "kind": "baseline",
            "objective": "none (classical signal-processing features)", "embedding_dim": _dim(), "params": 0}
