"""Static checks of a card against an inspected model: input names, layout, lead count, length, output pooling."""
from __future__ import annotations

from services.embedding.card import CardError, ModelCard
from services.embedding.zoo.importer.shapes import (Shape, find_tensor, fmt_shape, guess_layout, layout_axes,
                                                    pooled_shape)

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
    label = f"model input {model_input['name']!r} has shape {fmt_shape(shape)}"
    layout, leads = card.input.layout, card.input.leads
    want_rank = 2 if layout == "BT" else 3
    if len(shape) != want_rank:
        other = guess_layout(shape, list(leads))
        raise CardError(f"{label} (rank {len(shape)}) but layout {layout} feeds rank {want_rank}"
                        + (f"; use layout {other}" if other else ""))
    lead_axis, time_axis = layout_axes(layout)
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
    tensor = find_tensor(info, name)
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
    outs = ", ".join(f"{o['name']} {fmt_shape(o['shape'])}" for o in info.get("outputs", [])) or "none known"
    mids = ", ".join(f"{t['name']} {fmt_shape(t['shape'])}" for t in info.get("intermediates", [])[:limit])
    return f"outputs: {outs}" + (f"; candidate intermediate tensors: {mids}" if mids else "")


def pooling_problem(name: str | None, shape: Shape, pooling: str, axis: int, embedding_dim: int,
                    suggest_axis: int | None = None) -> str | None:
    """Why output shape + pooling does not give [batch, embedding_dim], with the fix; None when it does."""
    label = f"output {name!r}" if name else "the model's output"
    head = f"{label} has shape {fmt_shape(shape)}"
    how = f"pooling {pooling}" + (f" over axis {axis}" if pooling in ("mean", "max", "first") else "")
    pooled = pooled_shape(shape, pooling, axis)
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
