"""The backend interface, after MLServer's MLModel: load once, then run many times."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from services.embedding.card import ModelCard


class BackendError(RuntimeError):
    """A model package that the backend cannot load or run."""


class Backend(ABC):
    """Runs a model on its own input layout; pooling and validation live above it."""

    #: Short runtime description for logs and the card, e.g. "onnxruntime 1.32 [CPUExecutionProvider]".
    description: str = ""
    #: Batches a server may run side by side on this backend (each in its own thread); set by load().
    runners: int = 1

    @abstractmethod
    def load(self, card: ModelCard, package_dir: Path) -> None:
        """Load weights; raise BackendError with a precise reason when the card does not fit the model."""

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch in the model's layout and return the embedding tensor (before pooling)."""

    def param_count(self) -> int:
        """Number of trainable parameters when knowable, else 0."""
        return 0
