"""Python backend: any class with load(card, package_dir) and run(x) named by entry_point."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from services.embedding.backends.base import Backend, BackendError
from services.embedding.card import ModelCard


class PythonBackend(Backend):
    """Delegates to user code, e.g. a classical-feature extractor."""

    def load(self, card: ModelCard, package_dir: Path) -> None:
        """Import module:Class from entry_point, instantiate it and call its load()."""
        module_name, _, class_name = str(card.entry_point).partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise BackendError(f"entry_point {card.entry_point!r} cannot be imported: {err}") from None
        self.impl = cls()
        if hasattr(self.impl, "load"):
            self.impl.load(card, Path(package_dir))
        self.description = f"python {card.entry_point}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """Call the user's run()."""
        return np.asarray(self.impl.run(x))

    def param_count(self) -> int:
        """Whatever the user class reports (0 for feature extractors)."""
        return int(getattr(self.impl, "params", 0))
