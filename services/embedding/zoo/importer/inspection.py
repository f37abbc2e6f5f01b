"""Read a model file (ONNX, TorchScript, torch.export): inputs, outputs, candidate embedding tensors, parameters."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from services.common.text import first_line
from services.embedding.backends.base import BackendError
from services.embedding.card import CardError
from services.embedding.zoo.importer.batch_probe import batch_note, probe_onnx_batches
from services.embedding.zoo.importer.shapes import Shape, suggest_pooling

FORMATS = {".onnx": ("onnx", "onnxruntime"), ".pt": ("torchscript", "torch"), ".ts": ("torchscript", "torch"),
           ".jit": ("torchscript", "torch"), ".pt2": ("torch.export", "torch")}
# Batch 2, not 1, so a model exported with a fixed batch of 1 fails at import rather than under load.
PROBE_BATCH = 2
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


def inspect_model(path: Path, input_shape: list[int] | None = None, probe_batches: bool = True) -> dict:
    """Inputs, outputs, candidate embedding tensors and parameter count of a model file; for ONNX with a concrete
    input shape, also whether it runs at batch 2 (`batch_probe`, see batch_probe.py)."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"{path}: no such model file")
    fmt, backend = model_format(path)
    if fmt == "onnx":
        info = _inspect_onnx(path, input_shape)
        if probe_batches and info["inputs"]:
            info["batch_probe"] = probe_onnx_batches(path, info["inputs"][0], input_shape)
            note = batch_note(info["batch_probe"])
            if note:
                info["notes"].append(note)
    else:
        info = _inspect_torch(path, fmt, input_shape)
    return {"file": str(path), "format": fmt, "backend": backend, "sha256": _sha256(path), **info}


def model_format(path: Path) -> tuple[str, str]:
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
    outputs = [{**_tensor(vi), **suggest_pooling(_shape(vi) or [], time_axis(vi.name))} for vi in graph.output]
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
    """Every rank-2..4 float intermediate whose first dim is the batch, most useful (late, feature-producing ops)
    first. One whose shape info fixes the batch at 1 under a symbolic input batch is listed too, marked
    `fixed_batch: 1`: exporters traced at batch 1 leave such shapes (e.g. a Reshape to a constant shape), and
    the tensor may still be the embedding; whether the graph runs at batch 2 is for the batch probe to say."""
    found = []
    for name, vi in infos.items():
        shape = _shape(vi)
        if name in skip or name not in producers or shape is None or len(shape) not in (2, 3, 4):
            continue
        fixed = isinstance(batch, str) and shape[0] == 1
        if _dtype(vi) not in _FLOAT_TYPES or not (_batch_like(shape[0], batch) or fixed):
            continue
        index, node = producers[name]
        entry = {"name": name, "shape": shape, "dtype": _dtype(vi), "op": node.op_type,
                 **suggest_pooling(shape, time_axis(name)), **({"fixed_batch": 1} if fixed else {})}
        found.append((node.op_type not in _USEFUL_OPS, len(shape) == 4, -index, entry))
    return [entry for *_, entry in sorted(found, key=lambda f: f[:3])]


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
        raise BackendError(f"{path}: cannot load as {fmt} ({first_line(err)}). "
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
        notes.append(f"a dummy forward with input shape {shape} failed: {first_line(err)}")
        return []
    longer = None
    if any(t.dim() == 3 for t in named.values()):
        longer = _longer_forward(module, shape)
    outputs = []
    for name, tensor in named.items():
        dims: Shape = ["batch" if i == 0 and n == shape[0] else n for i, n in enumerate(tensor.shape)]
        time_axis = _grown_axis(tensor, longer.get(name)) if longer else None
        outputs.append({"name": name, "shape": dims, "dtype": str(tensor.dtype).replace("torch.", ""),
                        **suggest_pooling(dims, time_axis)})
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
