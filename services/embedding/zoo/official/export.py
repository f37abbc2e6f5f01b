"""What every official adapter's export shares: the ONNX export, the encoder's parameter count and the card frame."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

SERVING = {"max_batch_size": 32, "max_queue_delay_ms": 2.0, "max_queue_ecgs": 4096}


def export_onnx(wrapper, example, path: Path) -> str:
    """Export wrapper(ecg) -> embedding with a dynamic batch axis, weights inside the single .onnx file.

    The dynamo exporter is tried first (as for the zoo models); if it fails for an architecture, the
    TorchScript exporter (dynamo=False, opset 17) is used instead. Returns which exporter produced the file.
    """
    import torch

    wrapper = wrapper.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, (example,), str(path), input_names=["ecg"], output_names=["embedding"],
                              dynamo=True, external_data=False, optimize=True, verbose=False,
                              dynamic_shapes={"ecg": {0: torch.export.Dim("batch", min=1, max=4096)}})
            return f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
        except Exception as err:  # noqa: BLE001 - fall back to the TorchScript exporter, and say so
            log.warning("dynamo ONNX export failed (%s: %s); falling back to dynamo=False",
                        type(err).__name__, str(err)[:200])
            Path(path).unlink(missing_ok=True)
            torch.onnx.export(wrapper, (example,), str(path), input_names=["ecg"], output_names=["embedding"],
                              dynamo=False, opset_version=17,
                              dynamic_axes={"ecg": {0: "batch"}, "embedding": {0: "batch"}})
            return (f"torch.onnx.export(dynamo=False, opset 17) after the dynamo exporter failed "
                    f"({type(err).__name__}), torch {torch.__version__}")


def param_count(module) -> int:
    """Parameters of a module (buffers excluded)."""
    return int(sum(p.numel() for p in module.parameters()))


def encoder_params(module, head) -> int:
    """Parameters of a module without its classification head (loaded from the checkpoint, never exported)."""
    return param_count(module) - sum(p.numel() for p in head.parameters())


def write_onnx(wrapper, example, out_dir: Path | str) -> str:
    """Export wrapper(ecg) -> embedding to out_dir/model.onnx (creating out_dir); return which exporter wrote it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return export_onnx(wrapper, example, out_dir / "model.onnx")


def without_weight_norm(module, conv_path: str):
    """A fresh eval-mode copy of a config-built module whose weight-normed conv at conv_path has a plain weight.

    A fresh instance, not copy.deepcopy: a deep copy shares the parametrized class with the original, and
    removing the parametrization from one would strip the `weight` property from both. The folded weight has
    the same values, and the graph then has no parametrization in it.
    """
    from torch import nn

    copy = type(module)(module.config)
    copy.load_state_dict(module.state_dict())
    copy.eval()
    nn.utils.parametrize.remove_parametrizations(copy.get_submodule(conv_path), "weight", leave_parametrized=True)
    return copy


def card_frame(*, name: str, version: str, license: str, objective: str, description: str, params: int,
               sampling_rate_hz: float, leads, num_samples: int, normalization: str, embedding_dim: int,
               source: dict, notes: dict, build: dict) -> dict:
    """An official package's card data: ONNX graph model.onnx, wire ECGs [B, leads, samples] in mV named `ecg`,
    one pooled `embedding` output; the adapter supplies what is specific to its FM."""
    return {
        "name": name, "version": version, "backend": "onnxruntime", "license": license,
        "kind": "imported", "objective": objective, "description": description,
        "weights": "model.onnx", "params": params,
        "input": {"sampling_rate_hz": sampling_rate_hz, "leads": list(leads), "num_samples": num_samples,
                  "layout": "BLT", "units": "mV", "normalization": normalization, "input_name": "ecg"},
        "output": {"name": "embedding", "embedding_dim": embedding_dim, "pooling": "none"},
        "serving": dict(SERVING),
        "source": source, "notes": notes, "build": build,
    }
