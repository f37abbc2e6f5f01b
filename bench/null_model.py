"""A Python-backend model that returns zeros: isolates the data path in bench/data_scaling.py."""
import numpy as np


class NullModel:
    """[B, L, T] -> [B, 8] zeros."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """No compute, so the measurement is reading, preprocessing, transport and caching."""
        return np.zeros((x.shape[0], 8), np.float32)
