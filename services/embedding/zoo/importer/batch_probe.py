"""Does an ONNX model run at batch 2, or only at batch 1?

Exporters that trace at batch 1 can leave the batch fixed inside the graph (a Reshape to a constant
[1, ...] shape, say) while the input keeps a symbolic batch axis: the file looks batchable and fails on
the first real batch. Only running it tells, so inspection runs zeros at batch 2 and, when that fails, at 1.
"""
from __future__ import annotations

from pathlib import Path

from services.common.text import first_line
from services.embedding.zoo.importer.shapes import Shape

_NP_DTYPES = {"float32", "float16", "float64"}


def probe_shape_of(declared: Shape | None, given: list[int] | None) -> list[int] | None:
    """The batch-2 input shape to probe with: the given shape or the declared one, when every non-batch dim is known."""
    shape = list(given) if given else list(declared or [])
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return None
    if isinstance(declared[0] if declared else None, int) and declared[0] == 1:
        return None  # the input itself fixes the batch at 1: nothing to find out
    return [2, *shape[1:]]


def probe_onnx_batches(path: Path, model_input: dict, input_shape: list[int] | None) -> dict | None:
    """{'shape', 'batch_2': None or the error, 'batch_1': ...}; None when the input shape is not concrete."""
    import numpy as np
    import onnxruntime as ort

    shape = probe_shape_of(model_input.get("shape"), input_shape)
    if shape is None:
        return None
    dtype = model_input.get("dtype") if model_input.get("dtype") in _NP_DTYPES else "float32"
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the failure is reported here, once, not as runtime log spam
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for graphs it cannot load
        return {"shape": shape, "batch_2": f"cannot load: {first_line(err)}", "batch_1": None, "loaded": False}
    result: dict = {"shape": shape, "batch_2": None, "batch_1": None, "loaded": True}
    for batch in (2, 1):
        try:
            session.run(None, {model_input["name"]: np.zeros([batch, *shape[1:]], dtype)})
            return result
        except Exception as err:  # the runtime's own error text is the explanation
            result[f"batch_{batch}"] = first_line(err)
    return result


def batch_note(probe: dict | None) -> str | None:
    """A plain-language note on what the probe found; None when batch 2 ran."""
    if not probe or not probe["batch_2"]:
        return None
    if not probe.get("loaded", True):
        return f"onnxruntime {probe['batch_2']}"
    if probe["batch_1"] is None:
        return (f"the graph runs only at batch 1: zeros of shape {probe['shape']} fail ({probe['batch_2']}), batch 1 "
                "runs. Its shape info fixes the batch somewhere (tensors marked fixed-batch below); "
                "serving.max_batch_size: 1 is proposed (--max-batch-size 1), or re-export with a dynamic batch")
    return f"a zero batch of shape {probe['shape']} fails at batch 2 ({probe['batch_2']}) and at batch 1 " \
           f"({probe['batch_1']})"
