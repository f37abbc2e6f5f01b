"""Reading official checkpoints: safe torch.load, key-prefix clean-up, strict loading that names every mismatch."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from services.embedding.card import CardError


class OfficialCheckpointError(CardError):
    """A checkpoint that is unreadable or does not match the official architecture's key layout."""


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _numpy_safe_globals() -> list:
    """NumPy scalar/dtype classes that training scripts pickle as metadata (e.g. a val_auroc np.float64)."""
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core
    classes = [multiarray.multiarray.scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        classes += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return classes


class InertGlobal:
    """Stand-in for a class a checkpoint's metadata pickles (e.g. OmegaConf's DictConfig): never imported, never
    run; it accepts any constructor arguments and state and keeps none of them."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def _inert_globals(path: Path) -> list:
    """(stand-in class, 'module.Name') for every global the checkpoint names beyond torch's weights-only set."""
    import torch

    names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if not n.startswith("numpy")]
    return [(type(name.rsplit(".", 1)[-1], (InertGlobal,), {"__module__": __name__}), name) for name in names]


def load_checkpoint(path: Path | str, inert_metadata: bool = False) -> Any:
    """torch.load with weights_only=True (no arbitrary code from pickles); NumPy metadata scalars allowed.

    inert_metadata=True also reads checkpoints whose metadata pickles other classes (PyTorch Lightning's
    `hyper_parameters` as an OmegaConf DictConfig): still weights_only, with each such class replaced by an
    inert stand-in, so tensors load and the metadata is dropped.
    """
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise OfficialCheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # most often NumPy scalars in the metadata: retry with those (and only those) allowed
    except Exception as err:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise OfficialCheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") \
            from None
    try:
        allowed = _numpy_safe_globals()
        if inert_metadata:
            allowed = allowed + _inert_globals(path)
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise OfficialCheckpointError(
            f"{path}: cannot be loaded with weights_only=True ({type(err).__name__}: {str(err)[:300]}); "
            "ECGLens does not unpickle arbitrary objects from checkpoints") from None


def strip_prefix(state: dict, prefix: str) -> dict:
    """Drop a key prefix (e.g. 'module.' from DataParallel) when every key has it."""
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def wrapped_state(ckpt: Any, key: str, source: str, expected: str) -> dict:
    """The state dict under ckpt[key], or ckpt itself when it is a bare state dict; a 'module.' prefix removed.

    `expected` names the authors' wrapper in the error, e.g. "a PyTorch Lightning checkpoint ({'state_dict': ...})".
    """
    import torch

    if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
        state = ckpt[key]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        keys = sorted(map(str, ckpt))[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise OfficialCheckpointError(f"{source}: expected {expected} or a state dict; found {keys}")
    return strip_prefix(dict(state), "module.")


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_strict(module, state: dict, fm: str, source: str) -> None:
    """load_state_dict(strict=True), but first name every missing, unexpected or mis-shaped key."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"{source}: the {fm} weights are not a mapping of names to tensors")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(f"{k} (checkpoint {list(state[k].shape)}, architecture {list(expected[k].shape)})"
                        for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {_listing(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatch: {_listing(mis_shaped)}")
    if problems:
        raise OfficialCheckpointError(f"{source}: does not match the official {fm} key layout; "
                                      + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def key_indices(state: dict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by a regex with one group over the state dict's keys."""
    import re

    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := regex.match(k))})


def first_shape(state: dict, keys: list[str]) -> tuple[int, ...] | None:
    """Shape of the first of keys present in state (None if none is)."""
    for key in keys:
        if key in state:
            return tuple(state[key].shape)
    return None
