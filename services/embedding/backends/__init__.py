"""Inference backends behind one small interface (load, run); adding one touches one module."""
from __future__ import annotations

from services.embedding.backends.base import Backend, BackendError

__all__ = ["Backend", "BackendError", "create_backend"]


def create_backend(name: str) -> Backend:
    """Instantiate the backend a card names (imports lazily so unused runtimes cost nothing)."""
    if name == "onnxruntime":
        from services.embedding.backends.onnx_backend import OnnxBackend
        return OnnxBackend()
    if name == "torch":
        from services.embedding.backends.torch_backend import TorchBackend
        return TorchBackend()
    if name == "python":
        from services.embedding.backends.python_backend import PythonBackend
        return PythonBackend()
    raise BackendError(f"unknown backend {name!r}")
