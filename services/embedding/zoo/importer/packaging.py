"""Write an imported model's package: copy the file, write the card, probe and warm it up, publish atomically."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from services.common.text import first_line
from services.embedding.backends.base import BackendError
from services.embedding.card import CARD_FILE, CardError, ModelCard, parse_card, write_card
from services.embedding.zoo.imported import check_name
from services.embedding.zoo.importer.card_draft import missing_flags
from services.embedding.zoo.importer.checks import check_card_against_model, pooling_problem
from services.embedding.zoo.importer.inspection import PROBE_BATCH, inspect_model, model_format
from services.embedding.zoo.importer.shapes import Shape, find_tensor
from services.embedding.zoo.staging import staged_package

log = logging.getLogger(__name__)

def import_model(model_file: Path, out_root: Path, card: dict, force: bool = False) -> Path:
    """Copy a model into out_root/<name> with its card, atomically, after checking it embeds as the card says."""
    model_file = Path(model_file)
    fmt, backend = model_format(model_file)
    data = _complete(card, model_file, backend)
    parsed = parse_card(data, f"import {model_file.name}")
    check_name(parsed.name)
    info = inspect_model(model_file, input_shape=probe_shape(parsed), probe_batches=False)  # _probe runs it
    check_card_against_model(parsed, info)
    out_root = Path(out_root)
    target = out_root / parsed.name
    if (target / CARD_FILE).exists() and not force:
        raise CardError(f"{target} already exists; choose another name or pass --force to replace it")
    with staged_package(out_root, parsed.name) as staging:
        _copy_model(model_file, staging, str(parsed.weights), fmt)
        write_card(parsed, staging)
        _probe(parsed, staging, info)
        _load(staging)
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
        raise BackendError(f"the runtime cannot load the model: {first_line(err)}") from None
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
                           f"samples): {first_line(err)}{_batch_hint(backend, x)}") from None
    shape: Shape = ["B", *raw.shape[1:]] if raw.ndim and raw.shape[0] == batch else list(raw.shape)
    if raw.ndim == 0 or raw.shape[0] != batch:
        raise BackendError(f"the model's output has shape {list(raw.shape)} for a batch of {batch}: its first "
                           f"axis must be the batch")
    tensor = find_tensor(info, card.output.name) or {}
    problem = pooling_problem(card.output.name, shape, card.output.pooling, card.output.pool_axis,
                              card.output.embedding_dim, tensor.get("pool_axis"))
    if problem:
        raise CardError(problem)


def _batch_hint(backend, x) -> str:
    """When a batch of several fails, whether one ECG runs: then the graph fixes the batch at 1."""
    if len(x) < 2:
        return ""
    try:
        backend.run(x[:1])
    except Exception:  # fails at batch 1 too: the batch is not the problem
        return ""
    return (f". It runs on a batch of 1, so the graph fixes the batch at 1 (e.g. a Reshape to a constant shape, "
            f"from an export traced at batch 1): import it with --max-batch-size 1 (serving.max_batch_size: 1), or "
            f"re-export with a dynamic batch axis")


def _load(package: Path) -> None:
    """EmbeddingModel.load with its warm-up, as `ecglens serve` will do."""
    from services.embedding.model import EmbeddingModel

    try:
        EmbeddingModel.load(package)
    except (CardError, BackendError):
        raise
    except Exception as err:  # runtime-specific errors become one clear line
        raise BackendError(f"warm-up of the imported package failed: {first_line(err)}") from None
