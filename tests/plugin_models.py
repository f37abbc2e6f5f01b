"""A tiny python-backend model for tests/test_plugin.py, in its own light module (a server imports it)."""
from __future__ import annotations


class FailsOnSignal:
    """Runs its zero warm-up but raises on any real ECG, as a model failing on the server does (INTERNAL)."""

    params = 0

    def run(self, x):
        """[B, L, T] zeros -> [B, L]; anything else raises."""
        if x.any():
            raise RuntimeError("CUDA error: out of memory")
        return x.mean(axis=2)
