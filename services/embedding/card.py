"""Model cards: the YAML file in a model package that states what the model expects and returns."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CARD_FILE = "card.yaml"
BACKENDS = ("onnxruntime", "torch", "python")
KINDS = ("baseline", "pretrained", "imported")
LAYOUTS = ("BLT", "BTL", "BT")
NORMALIZATIONS = ("none", "zscore", "minmax")
POOLINGS = ("none", "mean", "max", "first", "flatten")
UNITS = ("mV", "uV")


class CardError(ValueError):
    """A model card that is missing keys or has values outside what ECGLens supports."""


@dataclass(frozen=True)
class InputSpec:
    """What the wire tensor [batch, leads, samples] must look like, and how the model wants it."""

    sampling_rate_hz: float
    leads: tuple[str, ...]
    num_samples: int
    layout: str = "BLT"
    units: str = "mV"
    normalization: str = "none"
    input_name: str | None = None


@dataclass(frozen=True)
class OutputSpec:
    """Which model tensor is the embedding and how it is reduced to [batch, embedding_dim]."""

    embedding_dim: int
    name: str | None = None
    pooling: str = "none"
    pool_axis: int = 1


@dataclass(frozen=True)
class ServingSpec:
    """Dynamic-batching settings (Triton's max_batch_size / max_queue_delay)."""

    max_batch_size: int = 32
    max_queue_delay_ms: float = 2.0
    max_queue_ecgs: int = 4096


@dataclass(frozen=True)
class ModelCard:
    """A validated card.yaml."""

    name: str
    version: str
    backend: str
    input: InputSpec
    output: OutputSpec
    serving: ServingSpec = field(default_factory=ServingSpec)
    license: str = "unknown"
    kind: str = "imported"
    objective: str = ""
    description: str = ""
    weights: str | None = None
    entry_point: str | None = None
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data, in card.yaml's structure."""
        data = asdict(self)
        data["input"]["leads"] = list(self.input.leads)
        extra = data.pop("extra")
        return {k: v for k, v in {**data, **extra}.items() if v is not None}


_TOP_KEYS = {"name", "version", "backend", "input", "output", "serving", "license", "kind", "objective",
             "description", "weights", "entry_point", "params"}
# Free-form sections that travel with the card but do not affect serving. A tuple, not a set: its order is
# the order they are written back in, which must not depend on PYTHONHASHSEED.
_EXTRA_KEYS = ("source", "training", "build", "notes")


def _need(section: dict, key: str, where: str) -> Any:
    if key not in section or section[key] in (None, ""):
        raise CardError(f"{where}: missing required key '{key}'")
    return section[key]


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise CardError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _positive(value: Any, where: str, kind: type = int) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise CardError(f"{where}: expected a positive number, got {value!r}") from None
    if number <= 0 or (kind is int and number != value):
        raise CardError(f"{where}: expected a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return number


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise CardError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def parse_card(data: Any, source: str = "card") -> ModelCard:
    """Validate a card's plain data and return a ModelCard; raise CardError naming the bad key."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: expected a mapping at the top level")
    _check_keys(data, _TOP_KEYS | set(_EXTRA_KEYS), source)
    backend = _choice(_need(data, "backend", source), BACKENDS, f"{source}: backend")
    inp = _need(data, "input", source)
    out = _need(data, "output", source)
    if not isinstance(inp, dict) or not isinstance(out, dict):
        raise CardError(f"{source}: 'input' and 'output' must be mappings")
    _check_keys(inp, set(InputSpec.__dataclass_fields__), f"{source}: input")
    _check_keys(out, set(OutputSpec.__dataclass_fields__), f"{source}: output")
    leads = _need(inp, "leads", f"{source}: input")
    if not isinstance(leads, list) or not leads or not all(isinstance(x, str) and x for x in leads):
        raise CardError(f"{source}: input.leads must be a non-empty list of lead names")
    if len(set(leads)) != len(leads):
        raise CardError(f"{source}: input.leads has duplicates: {leads}")
    layout = _choice(inp.get("layout", "BLT"), LAYOUTS, f"{source}: input.layout")
    if layout == "BT" and len(leads) != 1:
        raise CardError(f"{source}: input.layout BT is single-lead but input.leads lists {len(leads)} leads")
    input_spec = InputSpec(
        sampling_rate_hz=_positive(_need(inp, "sampling_rate_hz", f"{source}: input"),
                                   f"{source}: input.sampling_rate_hz", float),
        leads=tuple(leads),
        num_samples=_positive(_need(inp, "num_samples", f"{source}: input"), f"{source}: input.num_samples"),
        layout=layout,
        units=_choice(inp.get("units", "mV"), UNITS, f"{source}: input.units"),
        normalization=_choice(inp.get("normalization", "none"), NORMALIZATIONS, f"{source}: input.normalization"),
        input_name=inp.get("input_name"),
    )
    output_spec = OutputSpec(
        embedding_dim=_positive(_need(out, "embedding_dim", f"{source}: output"), f"{source}: output.embedding_dim"),
        name=out.get("name"),
        pooling=_choice(out.get("pooling", "none"), POOLINGS, f"{source}: output.pooling"),
        pool_axis=int(out.get("pool_axis", 1)),
    )
    serving_data = data.get("serving") or {}
    _check_keys(serving_data, set(ServingSpec.__dataclass_fields__), f"{source}: serving")
    serving = ServingSpec(
        max_batch_size=_positive(serving_data.get("max_batch_size", 32), f"{source}: serving.max_batch_size"),
        max_queue_delay_ms=float(serving_data.get("max_queue_delay_ms", 2.0)),
        max_queue_ecgs=_positive(serving_data.get("max_queue_ecgs", 4096), f"{source}: serving.max_queue_ecgs"),
    )
    if backend == "python":
        entry = _need(data, "entry_point", source)
        if ":" not in entry:
            raise CardError(f"{source}: entry_point must look like 'package.module:ClassName', got {entry!r}")
    else:
        _need(data, "weights", source)
    return ModelCard(
        name=str(_need(data, "name", source)), version=str(_need(data, "version", source)), backend=backend,
        input=input_spec, output=output_spec, serving=serving, license=str(data.get("license", "unknown")),
        kind=_choice(data.get("kind", "imported"), KINDS, f"{source}: kind"),
        objective=str(data.get("objective", "")), description=str(data.get("description", "")),
        weights=data.get("weights"), entry_point=data.get("entry_point"), params=int(data.get("params", 0)),
        extra={k: data[k] for k in _EXTRA_KEYS if k in data},
    )


def load_card(package_dir: Path | str) -> ModelCard:
    """Read and validate <package_dir>/card.yaml."""
    path = Path(package_dir) / CARD_FILE
    if not path.is_file():
        raise CardError(f"{package_dir}: no {CARD_FILE} (a model package is a directory with a card and weights)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CardError(f"{path}: not valid YAML: {err}") from None
    card = parse_card(data, str(path))
    if card.weights and not (Path(package_dir) / card.weights).is_file():
        raise CardError(f"{path}: weights file {card.weights!r} not found in the package")
    return card


def write_card(card: ModelCard, package_dir: Path | str) -> Path:
    """Write card.yaml (keys in a stable order, so builds are byte-reproducible)."""
    path = Path(package_dir) / CARD_FILE
    path.write_text(yaml.safe_dump(card.to_dict(), sort_keys=False, default_flow_style=None, width=100))
    return path


def fingerprint(card: ModelCard, package_dir: Path | str) -> str:
    """SHA-256 over the canonical card and the weights: changes whenever the embedding space may."""
    digest = hashlib.sha256(json.dumps(card.to_dict(), sort_keys=True).encode())
    if card.weights:
        with open(Path(package_dir) / card.weights, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
