"""Draft a model's card from its inspection: what the file tells filled in, TODOs naming the flag for the rest."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from services.embedding.zoo.importer.checks import pooling_problem
from services.embedding.zoo.importer.shapes import (Shape, find_tensor, fmt_shape, guess_layout, layout_axes,
                                                    pooled_shape, suggest_pooling)

STANDARD12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
TODO = "TODO"


def _todo(flag: str, hint: str) -> str:
    """A placeholder a human must replace; names the CLI flag that sets it."""
    return f"{TODO}: {flag} ({hint})"


def parse_leads(text: str) -> list[str]:
    """'I,II,V1' or 'standard12' -> lead names."""
    if text.strip().lower() == "standard12":
        return list(STANDARD12)
    return [lead.strip() for lead in text.split(",") if lead.strip()]


def card_skeleton(path: Path, info: dict, name: str | None = None, sampling_rate_hz: float | None = None,
                  leads: list[str] | None = None, num_samples: int | None = None, layout: str | None = None,
                  output: str | None = None, pooling: str | None = None, pool_axis: int | None = None,
                  embedding_dim: int | None = None, normalization: str | None = None,
                  license: str | None = None, max_batch_size: int | None = None) -> dict:
    """A card dict with what the model file tells filled in and TODO placeholders where a human must decide."""
    path = Path(path)
    notes: list[str] = []
    model_input = info["inputs"][0] if info.get("inputs") else {"name": None, "shape": None}
    in_shape = model_input.get("shape")
    layout = layout or guess_layout(in_shape, leads)
    if layout and not (leads and num_samples) and in_shape:
        notes.append(f"layout {layout} read from the input shape {fmt_shape(in_shape)}")
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
            "serving": {"max_batch_size": max_batch_size or _max_batch(in_shape, info, notes), "max_queue_delay_ms": 2.0,
                        "max_queue_ecgs": 4096},
            "source": {"file": path.name, "sha256": info.get("sha256"), "format": info["format"],
                       **({"producer": info["producer"]} if info.get("producer") else {})},
            **({"notes": notes} if notes else {})}


def _slug(stem: str) -> str:
    """A package name from a file stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "imported-model"


def _leads_todo(shape: Shape | None, layout: str | None) -> str:
    """The leads placeholder, saying how many the model's input dim expects when it is static."""
    count = shape[layout_axes(layout)[0]] if shape and layout in ("BLT", "BTL") and len(shape) == 3 else None
    if layout == "BT":
        return _todo("--leads NAME", "the single lead this model reads, e.g. II")
    howmany = f"{count} " if isinstance(count, int) else ""
    return _todo("--leads LIST", f"{howmany}lead names in the model's channel order, e.g. standard12 or I,II,V1")


def _static_dim(shape: Shape | None, layout: str | None) -> int | None:
    """The model input's time length when static."""
    if not shape or not layout or len(shape) != (2 if layout == "BT" else 3):
        return None
    size = shape[layout_axes(layout)[1]]
    return size if isinstance(size, int) else None


def _max_batch(shape: Shape | None, info: dict, notes: list[str]) -> int:
    """32, or 1 for a model whose input fixes the batch at 1 or whose graph fails at batch 2 (the batch probe)."""
    if shape and shape[0] == 1:
        notes.append("the model's batch dim is fixed at 1: serving.max_batch_size 1 (re-export with a dynamic "
                     "batch axis for throughput)")
        return 1
    probe = info.get("batch_probe")
    if probe and probe.get("batch_2") and probe.get("batch_1") is None and probe.get("loaded", True):
        return 1  # inspection's own note says why
    return 32


def _output_section(info: dict, output: str | None, pooling: str | None, pool_axis: int | None,
                    embedding_dim: int | None, notes: list[str]) -> dict:
    """output: name, pooling and embedding_dim from the chosen tensor's shape (or TODOs)."""
    tensor = find_tensor(info, output)
    section: dict[str, Any] = {}
    name = output if output is not None else (tensor or {}).get("name")
    if name is not None:
        section["name"] = name
    shape = (tensor or {}).get("shape")
    suggestion = suggest_pooling(shape) if shape and "pooling" not in tensor else (tensor or {})
    pooling = pooling or suggestion.get("pooling") or ("mean" if pool_axis else "none")
    axis = pool_axis or suggestion.get("pool_axis") or 1
    pooled = pooled_shape(shape, pooling, axis) if shape else None
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
                     f"tensor, e.g. --output {best['name']} {fmt_shape(best['shape'])}")
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
