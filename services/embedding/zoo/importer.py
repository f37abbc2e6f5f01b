"""Bring your own model: inspect an ONNX / TorchScript / torch.export file, draft its card, import it as a package."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from services.embedding.backends.base import BackendError
from services.embedding.card import (CARD_FILE, LAYOUTS, NORMALIZATIONS, POOLINGS, CardError, ModelCard, load_card,
                                     parse_card, write_card)
log = logging.getLogger(__name__)

STANDARD12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FORMATS = {".onnx": ("onnx", "onnxruntime"), ".pt": ("torchscript", "torch"), ".ts": ("torchscript", "torch"),
           ".jit": ("torchscript", "torch"), ".pt2": ("torch.export", "torch")}
TODO = "TODO"
MAX_CANDIDATES = 30
# Batch 2, not 1, so a model exported with a fixed batch of 1 fails at import rather than under load.
PROBE_BATCH = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FLOAT_TYPES = {"float32", "float16", "float64", "bfloat16"}
# Ops whose outputs usually make good embeddings (features just before a head), ranked first.
_USEFUL_OPS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "Flatten", "Gemm", "MatMul",
               "LayerNormalization", "Conv", "Relu", "Gelu"}
# ONNX ops that are channels-first ([B, C, T]: time is axis 2) or features-last ([B, T, D]: time is axis 1).
_CHANNELS_FIRST = {"Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "MaxPool", "AveragePool",
                   "LpPool", "GlobalAveragePool", "GlobalMaxPool"}
_FEATURES_LAST = {"MatMul", "Gemm", "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                  "RMSNormalization", "Attention", "MultiHeadAttention", "Softmax"}
_ELEMENTWISE = {"Relu", "Gelu", "Add", "Mul", "Sub", "Div", "Sigmoid", "Tanh", "Erf", "Dropout", "Identity", "Clip",
                "LeakyRelu", "Elu", "Selu", "Softplus", "HardSigmoid", "HardSwish", "PRelu", "Pow", "Sqrt", "Cast",
                "Mish", "Neg", "Abs"}

Shape = list  # dims: int (static), str (symbolic or "?")


# ---------------------------------------------------------------- inspection


def inspect_model(path: Path, input_shape: list[int] | None = None) -> dict:
    """Inputs, outputs, candidate embedding tensors and parameter count of a model file."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"{path}: no such model file")
    fmt, backend = _format(path)
    if fmt == "onnx":
        info = _inspect_onnx(path, input_shape)
    else:
        info = _inspect_torch(path, fmt, input_shape)
    return {"file": str(path), "format": fmt, "backend": backend, "sha256": _sha256(path), **info}


def _format(path: Path) -> tuple[str, str]:
    """(format, backend) from the file suffix."""
    if path.suffix.lower() not in FORMATS:
        raise CardError(f"{path.name}: unsupported model file {path.suffix or '(no suffix)'!r}; ECGLens imports "
                        f".onnx, TorchScript (.pt, .ts, .jit) and torch.export programs (.pt2). A state_dict needs "
                        f"its Python code: export it first (torch.onnx.export, torch.jit.save or torch.export.save)")
    return FORMATS[path.suffix.lower()]


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (models can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inspect_onnx(path: Path, input_shape: list[int] | None) -> dict:
    """ONNX: declared inputs/outputs, shape-inferred intermediate tensors, initialiser element count."""
    import onnx

    try:
        # External weights are not needed to read the graph, and may be gigabytes.
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises several types for a corrupt file
        raise BackendError(f"{path}: not a readable ONNX model ({err})") from None
    notes: list[str] = []
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    if input_shape:
        _fill_symbolic_dims(model, initializers, input_shape)
    graph = _infer_shapes(model, notes).graph
    inputs = [_tensor(vi) for vi in graph.input if vi.name not in initializers]
    infos = {vi.name: vi for vi in list(graph.value_info) + list(graph.output)}
    producers = {out: (index, node) for index, node in enumerate(graph.node) for out in node.output}
    time_axis = _time_axis_finder(producers, initializers)
    outputs = [{**_tensor(vi), **_suggest(_shape(vi) or [], time_axis(vi.name))} for vi in graph.output]
    batch = inputs[0]["shape"][0] if inputs and inputs[0]["shape"] else "?"
    skip = initializers | {o["name"] for o in outputs}
    intermediates = _onnx_candidates(infos, producers, skip, batch, time_axis)
    if len(inputs) > 1:
        notes.append(f"the model has {len(inputs)} inputs; ECGLens feeds one ECG tensor (set input.input_name)")
    return {"opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "params": int(sum(math.prod(init.dims) for init in graph.initializer)),
            "inputs": inputs, "outputs": outputs, "intermediates": intermediates, "notes": notes}


def _fill_symbolic_dims(model, initializers: set[str], input_shape: list[int]) -> None:
    """Give the first input's symbolic non-batch dims concrete sizes, so inference yields concrete shapes."""
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    if not inputs or len(inputs[0].type.tensor_type.shape.dim) != len(input_shape):
        return
    filled = False
    for dim, size in list(zip(inputs[0].type.tensor_type.shape.dim, input_shape))[1:]:
        if not dim.HasField("dim_value") and size > 0:  # static dims stay, so a conflicting card is still caught
            dim.dim_value = int(size)
            filled = True
    if filled:
        del model.graph.value_info[:]  # stale symbolic hints would conflict with the new sizes


def _infer_shapes(model, notes: list[str]):
    """ONNX shape inference, falling back to the exporter's value_info when it fails (custom ops)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as err:  # inference raises InferenceError and others for unusual graphs
        notes.append(f"ONNX shape inference failed ({err}); intermediate shapes are the exporter's")
        return model


def _shape(vi) -> Shape | None:
    """Dims of a ValueInfo: int for static, the symbol for dynamic, '?' for unknown; None without a shape."""
    tensor_type = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]


def _dtype(vi) -> str:
    """numpy-style dtype name of an ONNX tensor."""
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    except Exception:  # undefined or exotic element types
        return "unknown"


def _tensor(vi) -> dict:
    """{name, shape, dtype} of a ValueInfo."""
    return {"name": vi.name, "shape": _shape(vi), "dtype": _dtype(vi)}


def _time_axis_finder(producers: dict, initializers: set[str]):
    """Function tensor name -> time-like axis (1 or 2) of a rank-3 tensor, traced through its producing ops."""
    memo: dict[str, int | None] = {}

    def find(name: str, depth: int = 0) -> int | None:
        if name in memo:
            return memo[name]
        memo[name] = None  # guards cycles while this name is being resolved
        entry = producers.get(name)
        if entry is None or depth > 50:
            return None
        node = entry[1]
        axis = None
        if node.op_type in _CHANNELS_FIRST:
            axis = 2
        elif node.op_type in _FEATURES_LAST:
            axis = 1
        elif node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            inner = find(node.input[0], depth + 1)
            axis = perm.index(inner) if perm and inner is not None and inner in perm else None
        elif node.op_type in _ELEMENTWISE:
            axis = next((a for a in (find(i, depth + 1) for i in node.input if i and i not in initializers)
                         if a is not None), None)
        memo[name] = axis if axis in (1, 2) else None
        return memo[name]

    return find


def _batch_like(first: int | str, batch: int | str) -> bool:
    """Whether a tensor's first dim is the input's batch dim (same static size, or symbolic like it)."""
    return first == batch if isinstance(batch, int) else isinstance(first, str)


def _onnx_candidates(infos: dict, producers: dict, skip: set[str], batch: int | str, time_axis) -> list[dict]:
    """Rank-2/3 float tensors with a batch-like first dim, most useful (late, feature-producing ops) first."""
    found = []
    for name, vi in infos.items():
        shape = _shape(vi)
        if name in skip or name not in producers or shape is None or len(shape) not in (2, 3):
            continue
        if _dtype(vi) not in _FLOAT_TYPES or not _batch_like(shape[0], batch):
            continue
        index, node = producers[name]
        entry = {"name": name, "shape": shape, "dtype": _dtype(vi), "op": node.op_type,
                 **_suggest(shape, time_axis(name))}
        found.append((node.op_type not in _USEFUL_OPS, -index, entry))
    return [entry for *_, entry in sorted(found, key=lambda f: f[:2])][:MAX_CANDIDATES]


def _suggest(shape: Shape, time_axis: int | None = None) -> dict:
    """Pooling that turns a tensor of this shape into [batch, dim]: none for rank 2, mean over time for rank 3."""
    if len(shape) == 2:
        return {"pooling": "none", "embedding_dim": shape[1]}
    if len(shape) == 3:
        symbolic = [axis for axis in (1, 2) if isinstance(shape[axis], str)]
        axis = time_axis or (symbolic[0] if len(symbolic) == 1 else 2)  # dynamic length = time; else channels-first
        return {"pooling": "mean", "pool_axis": axis, "embedding_dim": shape[3 - axis]}
    if len(shape) > 3:
        return {"pooling": "flatten", "embedding_dim": _product(shape[1:])}
    return {}


def _product(dims: Shape) -> int | str:
    """Product of static dims, or '?' when any is symbolic."""
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else "?"


def _inspect_torch(path: Path, fmt: str, input_shape: list[int] | None) -> dict:
    """TorchScript / torch.export: inputs from the schema or program, outputs from a dummy forward."""
    module, inputs = _load_torch(path, fmt)
    notes: list[str] = []
    shape = list(input_shape) if input_shape else _static_shape(inputs)
    outputs: list[dict] = []
    if shape is None:
        notes.append("outputs unknown: give --input-shape B,L,T (or --leads, --samples and --layout) "
                     "for a dummy forward")
    else:
        outputs = _torch_outputs(module, shape, notes)
        if outputs and inputs:
            inputs[0]["shape"] = ["batch", *shape[1:]]  # the shape that worked
    notes.append("torch models expose only their returned tensors (dict keys or tuple indices) as outputs")
    return {"params": int(sum(p.numel() for p in module.parameters())), "inputs": inputs, "outputs": outputs,
            "intermediates": [], "notes": notes}


def _load_torch(path: Path, fmt: str):
    """(module, inputs) of a TorchScript archive or torch.export program, on CPU."""
    import torch

    try:
        if fmt == "torch.export":
            program = torch.export.load(str(path))
            return program.module(), _export_inputs(program)
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # torch raises RuntimeError and pickle errors alike
        raise BackendError(f"{path}: cannot load as {fmt} ({_first_line(err)}). "
                           f"A state_dict or pickled nn.Module needs its Python code: export it with "
                           f"torch.jit.script/trace + torch.jit.save, or torch.export.save (.pt2)") from None
    module.eval()
    arguments = module.forward.schema.arguments[1:]  # [0] is self
    return module, [{"name": a.name, "shape": None, "dtype": str(a.type)} for a in arguments]


def _export_inputs(program) -> list[dict]:
    """User inputs of a torch.export program with their (possibly symbolic) shapes."""
    names = set(program.graph_signature.user_inputs)
    inputs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            val = node.meta.get("val")
            shape = [d if isinstance(d, int) else str(d) for d in val.shape] if hasattr(val, "shape") else None
            inputs.append({"name": node.name, "shape": shape,
                           "dtype": str(getattr(val, "dtype", "?")).replace("torch.", "")})
    return inputs


def _static_shape(inputs: list[dict]) -> list[int] | None:
    """A probe shape from the first input: symbolic batch becomes PROBE_BATCH; other symbolic dims -> None."""
    if not inputs or not inputs[0]["shape"]:
        return None
    first, *rest = inputs[0]["shape"]
    if not all(isinstance(d, int) for d in rest):
        return None
    return [first if isinstance(first, int) else PROBE_BATCH, *rest]


def _torch_outputs(module, shape: list[int], notes: list[str]) -> list[dict]:
    """Run zeros of `shape` and describe what comes back (names as TorchBackend resolves output.name)."""
    try:
        named = _named_outputs(_forward(module, shape))
    except Exception as err:  # any model error: report, do not crash the inspection
        notes.append(f"a dummy forward with input shape {shape} failed: {_first_line(err)}")
        return []
    longer = None
    if any(t.dim() == 3 for t in named.values()):
        longer = _longer_forward(module, shape)
    outputs = []
    for name, tensor in named.items():
        dims: Shape = ["batch" if i == 0 and n == shape[0] else n for i, n in enumerate(tensor.shape)]
        time_axis = _grown_axis(tensor, longer.get(name)) if longer else None
        outputs.append({"name": name, "shape": dims, "dtype": str(tensor.dtype).replace("torch.", ""),
                        **_suggest(dims, time_axis)})
    return outputs


def _forward(module, shape: list[int]):
    """One forward pass on zeros without autograd."""
    import torch

    with torch.inference_mode():
        return module(torch.zeros(*shape))


def _named_outputs(out) -> dict:
    """Tensor outputs keyed as output.name selects them: None for a lone tensor, keys, or tuple indices."""
    import torch

    if isinstance(out, torch.Tensor):
        return {None: out}
    if isinstance(out, dict):
        return {str(k): v for k, v in out.items() if isinstance(v, torch.Tensor)}
    if isinstance(out, (tuple, list)):
        return {str(i): v for i, v in enumerate(out) if isinstance(v, torch.Tensor)}
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor, dict or tuple of tensors")


def _longer_forward(module, shape: list[int]) -> dict:
    """Outputs for an input twice as long: the axis that grows with input length is the time-like one."""
    if len(shape) < 2:
        return {}
    longer = list(shape)
    axis = max(range(1, len(shape)), key=lambda i: shape[i])  # the longest input axis is time
    longer[axis] *= 2
    try:
        return _named_outputs(_forward(module, longer))
    except Exception:  # fixed-length models (positional embeddings) cannot run longer input: no hint then
        return {}


def _grown_axis(tensor, longer) -> int | None:
    """The axis (1 or 2) of a rank-3 output that grew with longer input, if exactly one did."""
    if longer is None or tensor.dim() != 3 or longer.dim() != 3:
        return None
    grown = [axis for axis in (1, 2) if longer.shape[axis] != tensor.shape[axis]]
    return grown[0] if len(grown) == 1 else None


# ---------------------------------------------------------------- card skeleton


def _todo(flag: str, hint: str) -> str:
    """A placeholder a human must replace; names the CLI flag that sets it."""
    return f"{TODO}: {flag} ({hint})"


def parse_leads(text: str) -> list[str]:
    """'I,II,V1' or 'standard12' -> lead names."""
    if text.strip().lower() == "standard12":
        return list(STANDARD12)
    return [lead.strip() for lead in text.split(",") if lead.strip()]


def guess_layout(shape: Shape | None, leads: list[str] | None = None) -> str | None:
    """BLT for [B, 12, T], BTL for [B, T, 12], BT for [B, T]; None when the shape does not tell."""
    if not shape:
        return None
    if len(shape) == 2:
        return "BT"
    if len(shape) != 3:
        return None
    a, b = shape[1], shape[2]
    if leads:
        if a == len(leads) and b != len(leads):
            return "BLT"
        if b == len(leads) and a != len(leads):
            return "BTL"
    if isinstance(a, int) and a <= 16 and (isinstance(b, str) or b > a):
        return "BLT"
    if isinstance(b, int) and b <= 16 and (isinstance(a, str) or a > b):
        return "BTL"
    return None


def _axes(layout: str) -> tuple[int | None, int]:
    """(lead axis, time axis) of the model input in a layout."""
    return {"BLT": (1, 2), "BTL": (2, 1), "BT": (None, 1)}[layout]


def _find_tensor(info: dict, name: str | None) -> dict | None:
    """An output or intermediate by name (None: the first output)."""
    tensors = info.get("outputs", []) + info.get("intermediates", [])
    if name is None:
        return tensors[0] if info.get("outputs") else None
    return next((t for t in tensors if t["name"] == name), None)


def _pooled(shape: Shape, pooling: str, axis: int) -> Shape | None:
    """The shape after pooling; None when pool_axis is out of range."""
    if pooling in ("mean", "max", "first"):
        return shape[:axis] + shape[axis + 1:] if 1 <= axis < len(shape) else None
    if pooling == "flatten":
        return [shape[0], _product(shape[1:])]
    return list(shape)


def card_skeleton(path: Path, info: dict, name: str | None = None, sampling_rate_hz: float | None = None,
                  leads: list[str] | None = None, num_samples: int | None = None, layout: str | None = None,
                  output: str | None = None, pooling: str | None = None, pool_axis: int | None = None,
                  embedding_dim: int | None = None, normalization: str | None = None,
                  license: str | None = None) -> dict:
    """A card dict with what the model file tells filled in and TODO placeholders where a human must decide."""
    path = Path(path)
    notes: list[str] = []
    model_input = info["inputs"][0] if info.get("inputs") else {"name": None, "shape": None}
    in_shape = model_input.get("shape")
    layout = layout or guess_layout(in_shape, leads)
    if layout and not (leads and num_samples) and in_shape:
        notes.append(f"layout {layout} read from the input shape {_fmt(in_shape)}")
    inp = {"sampling_rate_hz": sampling_rate_hz or _todo("--rate HZ", "sampling rate the model was trained at"),
           "leads": leads or [_leads_todo(in_shape, layout)],
           "num_samples": num_samples or _static_dim(in_shape, layout) or _todo("--samples N", "samples per lead"),
           "layout": layout or _todo("--layout BLT|BTL|BT", "cannot tell leads from time in this input shape"),
           "units": "mV",
           "normalization": normalization or _todo("--normalization none|zscore|minmax",
                                                   "how the training ECGs were scaled")}
    if info["format"] == "onnx" and model_input.get("name"):
        inp["input_name"] = model_input["name"]
    return {"name": name or _slug(path.stem), "version": "1.0.0", "backend": info["backend"],
            "license": license or "unknown", "kind": "imported", "objective": "",
            "description": f"Imported from {path.name} ({info['format']}).",
            "weights": "model" + path.suffix.lower(), "params": int(info.get("params", 0)),
            "input": inp, "output": _output_section(info, output, pooling, pool_axis, embedding_dim, notes),
            "serving": {"max_batch_size": _max_batch(in_shape, notes), "max_queue_delay_ms": 2.0,
                        "max_queue_ecgs": 4096},
            "source": {"file": path.name, "sha256": info.get("sha256"), "format": info["format"],
                       **({"producer": info["producer"]} if info.get("producer") else {})},
            **({"notes": notes} if notes else {})}


def _slug(stem: str) -> str:
    """A package name from a file stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "imported-model"


def _leads_todo(shape: Shape | None, layout: str | None) -> str:
    """The leads placeholder, saying how many the model's input dim expects when it is static."""
    count = shape[_axes(layout)[0]] if shape and layout in ("BLT", "BTL") and len(shape) == 3 else None
    if layout == "BT":
        return _todo("--leads NAME", "the single lead this model reads, e.g. II")
    howmany = f"{count} " if isinstance(count, int) else ""
    return _todo("--leads LIST", f"{howmany}lead names in the model's channel order, e.g. standard12 or I,II,V1")


def _static_dim(shape: Shape | None, layout: str | None) -> int | None:
    """The model input's time length when static."""
    if not shape or not layout or len(shape) != (2 if layout == "BT" else 3):
        return None
    size = shape[_axes(layout)[1]]
    return size if isinstance(size, int) else None


def _max_batch(shape: Shape | None, notes: list[str]) -> int:
    """32, or 1 for a model exported with a fixed batch of 1."""
    if shape and shape[0] == 1:
        notes.append("the model's batch dim is fixed at 1: serving.max_batch_size 1 (re-export with a dynamic "
                     "batch axis for throughput)")
        return 1
    return 32


def _output_section(info: dict, output: str | None, pooling: str | None, pool_axis: int | None,
                    embedding_dim: int | None, notes: list[str]) -> dict:
    """output: name, pooling and embedding_dim from the chosen tensor's shape (or TODOs)."""
    tensor = _find_tensor(info, output)
    section: dict[str, Any] = {}
    name = output if output is not None else (tensor or {}).get("name")
    if name is not None:
        section["name"] = name
    shape = (tensor or {}).get("shape")
    suggestion = _suggest(shape) if shape and "pooling" not in tensor else (tensor or {})
    pooling = pooling or suggestion.get("pooling") or ("mean" if pool_axis else "none")
    axis = pool_axis or suggestion.get("pool_axis") or 1
    pooled = _pooled(shape, pooling, axis) if shape else None
    dim = embedding_dim or (pooled[1] if pooled and len(pooled) == 2 and isinstance(pooled[1], int) else None)
    if shape and not embedding_dim and (pooled is None or len(pooled) != 2):
        # The pooling, not the size, is what needs fixing: say so instead of asking for a dim.
        problem = pooling_problem(name, shape, pooling, axis, 0, suggestion.get("pool_axis"))
        section["embedding_dim"] = _todo("--pooling/--pool-axis", str(problem))
    else:
        section["embedding_dim"] = dim or _todo("--embedding-dim N", "size of the pooled embedding")
    section["pooling"] = pooling
    if pooling in ("mean", "max", "first"):
        section["pool_axis"] = axis
    if tensor is None and output is not None:
        notes.append(f"output {output!r} is not among the inspected tensors; import will check it")
    elif tensor is not None and output is None and info.get("intermediates") and isinstance(dim, int) and dim < 32:
        best = info["intermediates"][0]
        notes.append(f"output {name!r} has only {dim} features (logits?); an embedding may be an intermediate "
                     f"tensor, e.g. --output {best['name']} {_fmt(best['shape'])}")
    return section


def missing_flags(card: dict) -> list[str]:
    """The TODO placeholders still in a card, as 'FLAG (hint)' strings."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith(TODO):
            found.append(value[len(TODO) + 1:].strip())
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk({k: v for k, v in card.items() if k != "notes"})
    return found


# ---------------------------------------------------------------- card vs model checks


def _fmt(shape: Shape | None) -> str:
    """[batch, 12, 5000]."""
    return "[?]" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def check_card_against_model(card: ModelCard, info: dict) -> None:
    """Static checks of a card against the inspected model; raise CardError with the fix."""
    _check_input(card, info)
    _check_output(card, info)


def _check_input(card: ModelCard, info: dict) -> None:
    """input_name exists; layout's rank, lead count and length fit the model's declared input."""
    names = [i["name"] for i in info.get("inputs", [])]
    if card.backend == "onnxruntime":
        if card.input.input_name and card.input.input_name not in names:
            raise CardError(f"input.input_name {card.input.input_name!r} is not an input of the model; "
                            f"inputs: {names}")
        if len(names) > 1 and not card.input.input_name:
            raise CardError(f"the model has {len(names)} inputs {names}; set input.input_name to the ECG one "
                            f"(ECGLens feeds a single tensor)")
    model_input = next((i for i in info.get("inputs", []) if i["name"] == card.input.input_name), None) \
        or (info["inputs"][0] if info.get("inputs") else None)
    shape = model_input.get("shape") if model_input else None
    if not shape:
        return
    label = f"model input {model_input['name']!r} has shape {_fmt(shape)}"
    layout, leads = card.input.layout, card.input.leads
    want_rank = 2 if layout == "BT" else 3
    if len(shape) != want_rank:
        other = guess_layout(shape, list(leads))
        raise CardError(f"{label} (rank {len(shape)}) but layout {layout} feeds rank {want_rank}"
                        + (f"; use layout {other}" if other else ""))
    lead_axis, time_axis = _axes(layout)
    if lead_axis is not None and isinstance(shape[lead_axis], int) and shape[lead_axis] != len(leads):
        hint = ""
        if isinstance(shape[time_axis], int) and shape[time_axis] == len(leads):
            hint = f"; or the layout is {'BTL' if layout == 'BLT' else 'BLT'}"
        raise CardError(f"{label}: with layout {layout} axis {lead_axis} is leads, so it expects "
                        f"{shape[lead_axis]} leads, but input.leads lists {len(leads)} ({', '.join(leads)}){hint}")
    if isinstance(shape[time_axis], int) and shape[time_axis] != card.input.num_samples:
        raise CardError(f"{label}: with layout {layout} axis {time_axis} is time, so it expects "
                        f"{shape[time_axis]} samples, but input.num_samples is {card.input.num_samples}")
    if shape[0] == 1 and card.serving.max_batch_size > 1:
        raise CardError(f"{label}: its batch size is fixed at 1, so set serving.max_batch_size: 1 "
                        f"(or re-export with a dynamic batch axis)")
    if isinstance(shape[0], int) and shape[0] > 1:
        raise CardError(f"{label}: its batch size is fixed at {shape[0]}, but ECGLens sends batches of 1 to "
                        f"serving.max_batch_size; re-export with a dynamic batch axis (or a batch of 1)")


def _check_output(card: ModelCard, info: dict) -> None:
    """output.name exists (listing the candidates) and, when shapes are static, pooling gives [batch, dim]."""
    name, outputs = card.output.name, info.get("outputs", [])
    if card.backend == "torch":
        if not outputs:
            return  # outputs unknown without a forward; the import probe checks them
        if len(outputs) == 1 and outputs[0]["name"] is None:
            name = None  # a lone returned tensor: TorchBackend ignores output.name
        elif name is None:
            raise CardError(f"the model returns several tensors; set output.name to one of "
                            f"{[o['name'] for o in outputs]}")
    tensor = _find_tensor(info, name)
    if tensor is None and name is not None:
        raise CardError(f"output.name {name!r} is not a tensor of this model; {_listing(info)}")
    shape = tensor.get("shape") if tensor else None
    if shape and all(isinstance(d, int) for d in shape[1:]):
        problem = pooling_problem(name, shape, card.output.pooling, card.output.pool_axis,
                                  card.output.embedding_dim, tensor.get("pool_axis"))
        if problem:
            raise CardError(problem)


def _listing(info: dict, limit: int = 10) -> str:
    """'outputs: a [..]; candidate intermediates: b [..], ...' for error messages."""
    outs = ", ".join(f"{o['name']} {_fmt(o['shape'])}" for o in info.get("outputs", [])) or "none known"
    mids = ", ".join(f"{t['name']} {_fmt(t['shape'])}" for t in info.get("intermediates", [])[:limit])
    return f"outputs: {outs}" + (f"; candidate intermediate tensors: {mids}" if mids else "")


def pooling_problem(name: str | None, shape: Shape, pooling: str, axis: int, embedding_dim: int,
                    suggest_axis: int | None = None) -> str | None:
    """Why output shape + pooling does not give [batch, embedding_dim], with the fix; None when it does."""
    label = f"output {name!r}" if name else "the model's output"
    head = f"{label} has shape {_fmt(shape)}"
    how = f"pooling {pooling}" + (f" over axis {axis}" if pooling in ("mean", "max", "first") else "")
    pooled = _pooled(shape, pooling, axis)
    if pooled is None:
        where = "the batch axis" if axis == 0 else "out of range"
        return f"{head}; pool_axis {axis} is {where} (choose 1..{len(shape) - 1})"
    if len(pooled) != 2:
        return f"{head}; {how} cannot make [batch, dim] (it gives rank {len(pooled)}): " \
               f"{_fix(shape, embedding_dim, suggest_axis)}"
    dim = pooled[1]
    if isinstance(dim, int) and dim != embedding_dim:
        hint = f"set output.embedding_dim: {dim}"
        if len(shape) == 3 and pooling in ("mean", "max", "first") and shape[axis] == embedding_dim:
            hint = f"pool_axis {3 - axis} gives {embedding_dim}"
        return f"{head}; {how} gives [B, {dim}] but output.embedding_dim is {embedding_dim}: {hint}"
    return None


def _fix(shape: Shape, embedding_dim: int, suggest_axis: int | None) -> str:
    """The pooling that would work for a tensor of this rank."""
    if len(shape) == 2:
        return "use pooling none"
    if len(shape) == 3:
        axis = suggest_axis or (2 if shape[1] == embedding_dim else 1 if shape[2] == embedding_dim else 2)
        return f"use pooling mean with pool_axis {axis}"
    return "use pooling flatten, or choose a rank-2/3 tensor with --output"


# ---------------------------------------------------------------- import


def import_model(model_file: Path, out_root: Path, card: dict, force: bool = False) -> Path:
    """Copy a model into out_root/<name> with its card, atomically, after checking it embeds as the card says."""
    model_file = Path(model_file)
    fmt, backend = _format(model_file)
    data = _complete(card, model_file, backend)
    parsed = parse_card(data, f"import {model_file.name}")
    _check_name(parsed.name)
    info = inspect_model(model_file, input_shape=probe_shape(parsed))
    check_card_against_model(parsed, info)
    out_root = Path(out_root)
    target = out_root / parsed.name
    if (target / CARD_FILE).exists() and not force:
        raise CardError(f"{target} already exists; choose another name or pass --force to replace it")
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{parsed.name}-", dir=out_root))
    staging.chmod(0o755)  # mkdtemp makes it private; containers read it as another user
    try:
        _copy_model(model_file, staging, str(parsed.weights), fmt)
        write_card(parsed, staging)
        _probe(parsed, staging, info)
        _load(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported %s into %s", model_file, target)
    return target


def _complete(card: dict, model_file: Path, backend: str) -> dict:
    """Card defaults an import can fill: weights file name, backend, kind, TODOs reported."""
    data = json.loads(json.dumps(card))  # a deep copy of plain data
    data.setdefault("weights", "model" + model_file.suffix.lower())
    data.setdefault("backend", backend)
    if data["backend"] != backend:
        raise CardError(f"backend {data['backend']!r} cannot run {model_file.name}; {model_file.suffix} files "
                        f"need backend {backend!r}")
    data.setdefault("kind", "imported")
    data.setdefault("version", "1.0.0")
    if data.get("notes") == []:
        data.pop("notes")
    missing = missing_flags(data)
    if missing:
        raise CardError("the card still has TODO values; set: " + "; ".join(missing))
    weights = str(data["weights"])
    if Path(weights).name != weights or weights.startswith("."):
        raise CardError(f"weights {weights!r} must be a plain file name inside the package")
    if Path(weights).suffix.lower() != model_file.suffix.lower():
        raise CardError(f"weights {weights!r} must keep the model file's suffix {model_file.suffix!r} "
                        f"(the backend picks the loader by it)")
    return data


def _builders() -> dict:
    """registry.BUILDERS, imported late so registry may import this module at its top without a cycle."""
    from services.embedding.zoo.registry import BUILDERS

    return BUILDERS


def _zoo_dir() -> Path:
    """registry.zoo_dir(), imported late for the same reason."""
    from services.embedding.zoo.registry import zoo_dir

    return zoo_dir()


def _check_name(name: str) -> None:
    """Package names are directory names and --model arguments: simple, and not a built-in zoo model."""
    if not _NAME.match(name):
        raise CardError(f"name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, starting with a "
                        f"letter or digit)")
    if name in _builders():
        raise CardError(f"name {name!r} is a built-in zoo model; choose another --name")


def probe_shape(card: ModelCard, batch: int = PROBE_BATCH) -> list[int]:
    """The model-layout input shape for a batch of the card's ECGs."""
    batch = min(batch, card.serving.max_batch_size)
    leads, samples = len(card.input.leads), card.input.num_samples
    return {"BLT": [batch, leads, samples], "BTL": [batch, samples, leads], "BT": [batch, samples]}[card.input.layout]


def _copy_model(model_file: Path, staging: Path, weights: str, fmt: str) -> None:
    """Copy the model (and an ONNX model's external-data files, kept at their relative paths)."""
    shutil.copyfile(model_file, staging / weights)
    if fmt != "onnx":
        return
    for location in _external_files(model_file):
        source = (model_file.parent / location).resolve()
        if model_file.parent.resolve() not in source.parents:
            raise CardError(f"{model_file.name}: external data {location!r} lies outside the model's folder")
        (staging / location).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / location)


def _external_files(model_file: Path) -> set[str]:
    """Relative paths of the external-data files an ONNX model refers to."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    return {entry.value for init in model.graph.initializer
            if init.data_location == onnx.TensorProto.EXTERNAL
            for entry in init.external_data if entry.key == "location"}


def _probe(card: ModelCard, package: Path, info: dict) -> None:
    """Run a zero batch through the backend and explain a raw output that the card's pooling cannot handle."""
    import numpy as np

    from services.embedding import adapt
    from services.embedding.backends import create_backend

    backend = create_backend(card.backend)
    try:
        backend.load(card, package)
    except (CardError, BackendError):
        raise
    except Exception as err:  # e.g. onnxruntime rejecting the graph
        raise BackendError(f"the runtime cannot load the model: {_first_line(err)}") from None
    batch = probe_shape(card)[0]
    x = adapt.to_layout(np.zeros((batch, len(card.input.leads), card.input.num_samples), np.float32),
                        card.input.layout)
    try:
        raw = np.asarray(backend.run(x))
    except BackendError as err:
        raise CardError(str(err)) from None  # e.g. output.name not among a torch model's dict keys
    except Exception as err:  # runtimes raise their own types; the first line says what broke
        raise BackendError(f"the model failed on a probe batch of shape {list(x.shape)} (layout "
                           f"{card.input.layout}, {len(card.input.leads)} leads, {card.input.num_samples} "
                           f"samples): {_first_line(err)}") from None
    shape: Shape = ["B", *raw.shape[1:]] if raw.ndim and raw.shape[0] == batch else list(raw.shape)
    if raw.ndim == 0 or raw.shape[0] != batch:
        raise BackendError(f"the model's output has shape {list(raw.shape)} for a batch of {batch}: its first "
                           f"axis must be the batch")
    tensor = _find_tensor(info, card.output.name) or {}
    problem = pooling_problem(card.output.name, shape, card.output.pooling, card.output.pool_axis,
                              card.output.embedding_dim, tensor.get("pool_axis"))
    if problem:
        raise CardError(problem)


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's text (runtime errors can be pages long)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def _load(package: Path) -> None:
    """EmbeddingModel.load with its warm-up, as `ecglens serve` will do."""
    from services.embedding.model import EmbeddingModel

    try:
        EmbeddingModel.load(package)
    except (CardError, BackendError):
        raise
    except Exception as err:  # runtime-specific errors become one clear line
        raise BackendError(f"warm-up of the imported package failed: {_first_line(err)}") from None


# ---------------------------------------------------------------- zoo listing


def imported_packages(zoo_dir: Path) -> list[dict]:
    """Listing entries for valid packages in the zoo dir that no builder made (imported or copied in)."""
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        return []
    entries = []
    for path in sorted(zoo_dir.iterdir()):
        # Dot-directories are imports or builds in progress (staging), never packages.
        if path.name.startswith(".") or path.name in _builders() or not (path / CARD_FILE).is_file():
            continue
        try:
            card = load_card(path)
        except CardError as err:
            log.warning("skipping %s: %s", path, err)
            continue
        entries.append({"name": path.name, "version": card.version, "kind": card.kind,
                        "objective": card.objective or _source_note(card), "embedding_dim": card.output.embedding_dim,
                        "params": card.params, "built": True, "path": str(path)})
    return entries


def _source_note(card: ModelCard) -> str:
    """'imported from model.onnx' when the card has no objective."""
    source = card.extra.get("source")
    return f"imported from {source['file']}" if isinstance(source, dict) and source.get("file") else "imported"


def find_imported(name: str, zoo: Path | None = None) -> Path | None:
    """The package directory of an imported model by name, if the zoo dir has one."""
    path = Path(zoo or _zoo_dir()) / name
    return path if _NAME.match(name) and (path / CARD_FILE).is_file() else None


# ---------------------------------------------------------------- CLI


def _card_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that fill in the card (shared by inspect --write-card and import)."""
    group = parser.add_argument_group("card values (what the model file cannot tell)")
    group.add_argument("--name", help="package name (letters, digits, . _ -); the zoo directory and --model name")
    group.add_argument("--rate", type=float, metavar="HZ", help="sampling rate the model was trained at, in Hz")
    group.add_argument("--leads", type=parse_leads, metavar="LIST",
                       help="lead names in the model's channel order, comma-separated (I,II,V1) or standard12 "
                            "(I, II, III, aVR, aVL, aVF, V1-V6)")
    group.add_argument("--samples", type=int, metavar="N", help="samples per lead (default: the model's static "
                                                                 "time dim)")
    group.add_argument("--layout", choices=LAYOUTS, help="model input layout: BLT [batch, leads, time], "
                                                         "BTL [batch, time, leads], BT single-lead [batch, time] "
                                                         "(default: guessed from the input shape)")
    group.add_argument("--output", metavar="NAME", help="tensor to use as the embedding: a graph output or, for "
                                                        "ONNX, any intermediate tensor (see `zoo inspect`); for "
                                                        "torch a dict key or tuple index")
    group.add_argument("--pooling", choices=POOLINGS, help="reduce the output to [batch, dim] (default: none for "
                                                           "rank 2, mean over time for rank 3)")
    group.add_argument("--pool-axis", type=int, metavar="K", help="axis of the output to pool (1 or 2 for rank 3)")
    group.add_argument("--embedding-dim", type=int, metavar="D", help="embedding size (default: from the output "
                                                                      "shape)")
    group.add_argument("--normalization", choices=NORMALIZATIONS,
                       help="per-lead scaling the model was trained with (default for import: none = raw mV)")
    group.add_argument("--license", help="the model's license (default: unknown)")


def add_cli(zoo_subparsers) -> None:
    """Add `zoo inspect` and `zoo import` to the `ecglens zoo` subparsers."""
    inspect = zoo_subparsers.add_parser(
        "inspect", help="show a model file's inputs, outputs and candidate embedding tensors; draft its card",
        description="Inspect an .onnx, TorchScript (.pt/.ts) or torch.export (.pt2) file: inputs, outputs, "
                    "intermediate tensors usable as embeddings (ONNX), parameter count, and a card skeleton "
                    "with TODOs for what only you know. --write-card writes the card once those are given.")
    inspect.add_argument("file", help="model file (.onnx, .pt, .ts, .pt2)")
    inspect.add_argument("--json", action="store_true", help="print {model, card} as JSON")
    inspect.add_argument("--input-shape", metavar="B,L,T", help="input shape for a dummy forward (torch) or for "
                                                                "concrete intermediate shapes (ONNX dynamic dims)")
    inspect.add_argument("--write-card", metavar="OUT.yaml", help="write the card (needs every TODO resolved by "
                                                                  "flags); then `zoo import FILE --card OUT.yaml`")
    _card_flags(inspect)
    inspect.set_defaults(func=_cmd_inspect)

    imp = zoo_subparsers.add_parser(
        "import", help="import your own model as a zoo package (copied, carded, validated by a warm-up)",
        description="Copy a model file into a new package directory with its card, then load it as `ecglens "
                    "serve` would (warm-up included). Give the card values by flags or --card CARD.yaml (flags "
                    "override the file). Nothing is left behind when validation fails.")
    imp.add_argument("file", help="model file (.onnx, .pt, .ts, .pt2)")
    imp.add_argument("--card", metavar="CARD.yaml", help="a card written by `zoo inspect --write-card` or by hand")
    imp.add_argument("--out", help="zoo directory (default: $ECGLENS_ZOO or ~/.cache/ecglens/zoo)")
    imp.add_argument("--force", action="store_true", help="replace an existing package of the same name")
    _card_flags(imp)
    imp.set_defaults(func=_cmd_import)


def _error(message: str) -> int:
    """Print one clear error and return the usage exit code."""
    print(f"ecglens: error: {message}", file=sys.stderr)
    return 2


def _int_list(text: str | None, flag: str) -> list[int] | None:
    """'1,12,5000' -> [1, 12, 5000]."""
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CardError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _inspect_for_flags(args: argparse.Namespace) -> dict:
    """inspect_model, re-run with the input shape the card flags imply when that makes shapes concrete."""
    path = Path(args.file)
    explicit = _int_list(getattr(args, "input_shape", None), "--input-shape")
    info = inspect_model(path, input_shape=explicit)
    if explicit or not (args.leads and args.samples) or not _needs_shape(info):
        return info
    in_shape = info["inputs"][0]["shape"] if info.get("inputs") else None
    layout = args.layout or guess_layout(in_shape, args.leads) or ("BT" if len(args.leads) == 1 else "BLT")
    shape = {"BLT": [PROBE_BATCH, len(args.leads), args.samples], "BTL": [PROBE_BATCH, args.samples,
             len(args.leads)], "BT": [PROBE_BATCH, args.samples]}[layout]
    return inspect_model(path, input_shape=shape)


def _needs_shape(info: dict) -> bool:
    """Whether outputs are unknown (torch) or the input has symbolic non-batch dims (ONNX)."""
    if not info.get("outputs"):
        return True
    shape = info["inputs"][0]["shape"] if info.get("inputs") else None
    return bool(shape) and any(isinstance(d, str) for d in shape[1:])


def _skeleton_args(args: argparse.Namespace) -> dict:
    """card_skeleton keyword arguments from the card flags."""
    return {"name": args.name, "sampling_rate_hz": args.rate, "leads": args.leads, "num_samples": args.samples,
            "layout": args.layout, "output": args.output, "pooling": args.pooling, "pool_axis": args.pool_axis,
            "embedding_dim": args.embedding_dim, "normalization": args.normalization, "license": args.license}


def _default_normalization(card: dict) -> None:
    """A card being written or imported without --normalization gets 'none' (raw mV), said out loud."""
    if str(card["input"].get("normalization", "")).startswith(TODO):
        card["input"]["normalization"] = "none"
        print("ecglens: note: --normalization not given; the model will get raw mV (normalization: none)",
              file=sys.stderr)


def _print_notes(card: dict) -> None:
    """The skeleton's notes (guesses, logits hints) on stderr, so an import from flags shows them."""
    for note in card.get("notes", []):
        print(f"ecglens: note: {note}", file=sys.stderr)


def _missing_message(what: str, missing: list[str]) -> str:
    """'cannot write X; give:' + one flag per line."""
    return f"cannot {what} yet; give:\n  " + "\n  ".join(missing)


def _cmd_inspect(args: argparse.Namespace) -> int:
    """`ecglens zoo inspect FILE`."""
    try:
        info = _inspect_for_flags(args)
        card = card_skeleton(Path(args.file), info, **_skeleton_args(args))
        if args.write_card:
            return _write_card_file(card, info, Path(args.write_card), args.file)
    except (CardError, BackendError) as err:
        return _error(str(err))
    print(json.dumps({"model": info, "card": card}, indent=2) if args.json else render(info, card))
    return 0


def _write_card_file(card: dict, info: dict, out: Path, model_file: str) -> int:
    """Write a card that parses and fits the model, or list the flags still needed (exit 2)."""
    _default_normalization(card)
    _print_notes(card)
    missing = missing_flags(card)
    if missing:
        return _error(_missing_message(f"write {out}", missing))
    parsed = parse_card(card, str(out))
    check_card_against_model(parsed, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(parsed.to_dict(), sort_keys=False, default_flow_style=None, width=100))
    print(f"wrote {out}\nimport with: ecglens zoo import {model_file} --card {out}")
    return 0


_OVERRIDES = {"name": ("name",), "rate": ("input", "sampling_rate_hz"), "leads": ("input", "leads"),
              "samples": ("input", "num_samples"), "layout": ("input", "layout"), "output": ("output", "name"),
              "pooling": ("output", "pooling"), "pool_axis": ("output", "pool_axis"),
              "embedding_dim": ("output", "embedding_dim"), "normalization": ("input", "normalization"),
              "license": ("license",)}


def _card_from_file(path: Path, args: argparse.Namespace) -> dict:
    """A --card file with the flags given on the command line applied on top."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CardError(f"{path}: cannot read the card ({err})") from None
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a mapping at the top level")
    for flag, keys in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            section = data
            for key in keys[:-1]:
                section = section.setdefault(key, {})
            section[keys[-1]] = value
    return data


def _cmd_import(args: argparse.Namespace) -> int:
    """`ecglens zoo import FILE`."""
    model_file = Path(args.file)
    try:
        if args.card:
            card = _card_from_file(Path(args.card), args)
        else:
            info = _inspect_for_flags(args)
            card = card_skeleton(model_file, info, **_skeleton_args(args))
            _default_normalization(card)
            _print_notes(card)
            missing = ([] if args.name else ["--name NAME (the package name)"]) + missing_flags(card)
            if missing:
                return _error(_missing_message(f"import {model_file.name}", missing))
        path = import_model(model_file, Path(args.out or _zoo_dir()), card, force=args.force)
    except (CardError, BackendError) as err:
        return _error(str(err))
    print(f"imported {model_file.name} as {path.name}: {path}\nserve it with: ecglens serve --model {path}")
    return 0


def render(info: dict, card: dict) -> str:
    """Human-readable inspection: tensors, candidates, notes and the card skeleton."""
    lines = [f"{Path(info['file']).name}: {info['format']}"
             + (f" (opset {info['opset']}" + (f", {info['producer']}" if info.get("producer") else "") + ")"
                if info.get("opset") else "")
             + f", {info['params']:,} parameters", "inputs:"]
    lines += [f"  {t['name']:<32} {t['dtype']:<9} {_fmt(t['shape'])}" for t in info["inputs"]]
    lines.append("outputs:")
    lines += [_row(t) for t in info["outputs"]] or ["  (unknown: give --input-shape for a dummy forward)"]
    if info.get("intermediates"):
        lines.append("candidate embedding tensors (use with --output NAME; most likely first):")
        lines += [_row(t) for t in info["intermediates"]]
    lines += [f"note: {n}" for n in info.get("notes", [])]
    lines += ["", "card skeleton (replace the TODOs, e.g. with the flags they name, and use --write-card):",
              yaml.safe_dump(card, sort_keys=False, default_flow_style=None, width=110).rstrip()]
    return "\n".join(lines)


def _row(tensor: dict) -> str:
    """One tensor line with its pooling suggestion."""
    name = tensor["name"] if tensor["name"] is not None else "(tensor)"
    hint = f"pooling {tensor['pooling']}" if tensor.get("pooling") else ""
    if tensor.get("pool_axis"):
        hint += f" --pool-axis {tensor['pool_axis']}"
    if tensor.get("embedding_dim") is not None:
        hint += f" -> dim {tensor['embedding_dim']}"
    op = f"{tensor['op']:<18}" if tensor.get("op") else ""
    return f"  {name:<32} {tensor['dtype']:<9} {_fmt(tensor['shape']):<22} {op}{hint}"
