"""Tiny python-backend model and package for the attribution tests (served by a real embedding server)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 100.0
NUM_SAMPLES = 1000  # 10 s, so four segments are 2.5 s each


class LeadStats:
    """Per-lead features [std of each lead, mean |x| of each lead]: a lead's features see only that lead."""

    params = 0

    def run(self, x: np.ndarray) -> np.ndarray:
        """[B, L, T] -> [B, 2L]."""
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([x.std(axis=2), np.abs(x).mean(axis=2)], axis=1).astype(np.float32)


def write_package(out_dir: Path, max_batch_size: int = 16) -> Path:
    """A python-backend package whose entry point is this module (the server needs it on PYTHONPATH)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    card = {
        "name": "lead-stats", "version": "1", "backend": "python", "kind": "baseline", "license": "Apache-2.0",
        "entry_point": "attribution_models:LeadStats",
        "input": {"sampling_rate_hz": SAMPLING_RATE_HZ, "leads": list(LEADS), "num_samples": NUM_SAMPLES},
        "output": {"embedding_dim": 2 * len(LEADS)},
        "serving": {"max_batch_size": max_batch_size, "max_queue_delay_ms": 1.0},
    }
    (out_dir / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return out_dir


def make_task(n: int, lead: str, seconds: tuple[float, float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ECGs [n, 12, T] of noise (level varying per record); label 1 adds a 5-Hz 1-mV wave on `lead` in `seconds`."""
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_SAMPLES) / SAMPLING_RATE_HZ
    sigma = rng.uniform(0.02, 0.1, size=(n, len(LEADS), 1))
    x = rng.normal(size=(n, len(LEADS), NUM_SAMPLES)) * sigma
    y = np.arange(n) % 2
    window = (t >= seconds[0]) & (t < seconds[1])
    wave = np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi, size=(n, 1))) * window
    x[:, LEADS.index(lead)] += y[:, None] * wave
    return x.astype(np.float32), y
