"""PyTorch backend: TorchScript (.pt/.ts via torch.jit.save) or torch.export programs (.pt2)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from services.embedding.backends.base import Backend, BackendError
from services.embedding.card import ModelCard


class TorchBackend(Backend):
    """Runs a TorchScript or torch.export model on CUDA when available, else CPU."""

    def load(self, card: ModelCard, package_dir: Path) -> None:
        """Load the program; the output named by the card is taken from a dict/tuple result."""
        path = Path(package_dir) / str(card.weights)
        self.device = torch.device(os.environ.get("ECGLENS_TORCH_DEVICE")
                                   or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            if path.suffix == ".pt2":
                self.module = torch.export.load(str(path)).module()
            else:
                self.module = torch.jit.load(str(path), map_location=self.device)
                self.module.eval()
        except Exception as err:  # torch raises RuntimeError and pickle errors alike
            raise BackendError(f"{path}: cannot load as TorchScript or torch.export program ({err})") from None
        self.module.to(self.device)
        self._output = card.output.name
        self._params = sum(p.numel() for p in self.module.parameters())
        self.description = f"torch {torch.__version__} on {self.device}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """Forward one batch without autograd."""
        with torch.inference_mode():
            out = self.module(torch.from_numpy(x).to(self.device))
        if isinstance(out, dict):
            if self._output not in out:
                raise BackendError(f"output.name {self._output!r} not in model outputs {sorted(out)}")
            out = out[self._output]
        elif isinstance(out, (tuple, list)):
            out = out[int(self._output or 0)] if (self._output or "0").isdigit() else out[0]
        return out.detach().float().cpu().numpy()

    def param_count(self) -> int:
        """Sum of parameter elements."""
        return int(self._params)
