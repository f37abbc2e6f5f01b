"""A Python-backend model that returns zeros: isolates the data path in bench/data_scaling.py."""
import os

import numpy as np


class NullModel:
    """[B, L, T] -> [B, D] zeros; D from ECGLENS_NULL_DIM (default 8), as the bench's card says."""

    def __init__(self) -> None:
        self.dim = int(os.environ.get("ECGLENS_NULL_DIM", "8"))

    def run(self, x: np.ndarray) -> np.ndarray:
        """No compute, so the measurement is reading, preprocessing, transport and caching."""
        return np.zeros((x.shape[0], self.dim), np.float32)
