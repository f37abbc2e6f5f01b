"""The authors' state_dict layouts (tests/golden/official_*.json) and a port's, for exact comparison."""
from __future__ import annotations

import json
from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parent / "golden"


def golden_manifest(name: str) -> dict:
    """One manifest, checked to name its source (repository and commit) and to list keys."""
    manifest = json.loads((GOLDEN / f"official_{name}.json").read_text())
    source = manifest["source"]
    assert source["repository"].startswith("https://github.com/") and len(source["commit"]) == 40, name
    assert manifest["state_dict"], name
    return manifest


def golden_layout(name: str, dropped: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """Key -> shape of the authors' model, less the key prefixes the port documents dropping."""
    return {k: v for k, v in golden_manifest(name)["state_dict"].items() if not k.startswith(dropped)}


def port_layout(module: torch.nn.Module) -> dict[str, list[int]]:
    """Key -> shape of a port's state_dict (parameters and buffers, as a checkpoint holds them)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}
