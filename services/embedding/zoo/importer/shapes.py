"""Shapes of model tensors: display, layout axes, pooling arithmetic and suggestions, tensor lookup."""
from __future__ import annotations

import math

Shape = list  # dims: int (static), str (symbolic or "?")


def fmt_shape(shape: Shape | None) -> str:
    """[batch, 12, 5000]."""
    return "[?]" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def product(dims: Shape) -> int | str:
    """Product of static dims, or '?' when any is symbolic."""
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else "?"


def suggest_pooling(shape: Shape, time_axis: int | None = None) -> dict:
    """Pooling that turns a tensor of this shape into [batch, dim]: none for rank 2, mean over time for rank 3."""
    if len(shape) == 2:
        return {"pooling": "none", "embedding_dim": shape[1]}
    if len(shape) == 3:
        symbolic = [axis for axis in (1, 2) if isinstance(shape[axis], str)]
        axis = time_axis or (symbolic[0] if len(symbolic) == 1 else 2)  # dynamic length = time; else channels-first
        return {"pooling": "mean", "pool_axis": axis, "embedding_dim": shape[3 - axis]}
    if len(shape) > 3:
        return {"pooling": "flatten", "embedding_dim": product(shape[1:])}
    return {}


def pooled_shape(shape: Shape, pooling: str, axis: int) -> Shape | None:
    """The shape after pooling; None when pool_axis is out of range."""
    if pooling in ("mean", "max", "first"):
        return shape[:axis] + shape[axis + 1:] if 1 <= axis < len(shape) else None
    if pooling == "flatten":
        return [shape[0], product(shape[1:])]
    return list(shape)


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


def layout_axes(layout: str) -> tuple[int | None, int]:
    """(lead axis, time axis) of the model input in a layout."""
    return {"BLT": (1, 2), "BTL": (2, 1), "BT": (None, 1)}[layout]


def find_tensor(info: dict, name: str | None) -> dict | None:
    """An output or intermediate by name (None: the first output)."""
    tensors = info.get("outputs", []) + info.get("intermediates", [])
    if name is None:
        return tensors[0] if info.get("outputs") else None
    return next((t for t in tensors if t["name"] == name), None)
