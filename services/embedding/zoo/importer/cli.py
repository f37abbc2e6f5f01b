"""`ecglens zoo inspect` and `ecglens zoo import`: flags, commands and the human-readable inspection."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from services.embedding.backends.base import BackendError
from services.embedding.card import LAYOUTS, NORMALIZATIONS, POOLINGS, CardError, parse_card
from services.embedding.zoo.catalog import zoo_dir
from services.embedding.zoo.importer.card_draft import TODO, card_skeleton, missing_flags, parse_leads
from services.embedding.zoo.importer.checks import check_card_against_model
from services.embedding.zoo.importer.inspection import PROBE_BATCH, inspect_model
from services.embedding.zoo.importer.packaging import import_model
from services.embedding.zoo.importer.shapes import fmt_shape, guess_layout

def _card_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that fill in the card (shared by inspect --write-card and import)."""
    group = parser.add_argument_group("card values (what the model file cannot tell)")
    group.add_argument("--name", help="package name (letters, digits, . _ -); the zoo directory and --model name "
                                      "(default: the file's stem)")
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
    group.add_argument("--max-batch-size", type=int, metavar="N",
                       help="largest batch the model runs (serving.max_batch_size; default 32, or 1 when the "
                            "input or the batch probe shows the graph runs only at batch 1)")


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
            "embedding_dim": args.embedding_dim, "normalization": args.normalization, "license": args.license,
            "max_batch_size": args.max_batch_size}


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
              "license": ("license",), "max_batch_size": ("serving", "max_batch_size")}


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
            missing = missing_flags(card)
            if missing:
                return _error(_missing_message(f"import {model_file.name}", missing))
        path = import_model(model_file, Path(args.out or zoo_dir()), card, force=args.force)
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
    tensors = info["inputs"] + info["outputs"] + info.get("intermediates", [])
    # Columns as wide as their longest entry (exported tensor names run long), two spaces apart.
    widths = (max([len(_name(t)) for t in tensors] + [8]), max([len(t["dtype"]) for t in tensors] + [5]),
              max([len(fmt_shape(t["shape"])) for t in tensors] + [5]),
              max([len(t.get("op") or "") for t in tensors] + [0]))
    lines += [_row(t, widths) for t in info["inputs"]]
    lines.append("outputs:")
    lines += [_row(t, widths) for t in info["outputs"]] or ["  (unknown: give --input-shape for a dummy forward)"]
    if info.get("intermediates"):
        lines.append(f"intermediate tensors usable as the embedding ({len(info['intermediates'])}; --output NAME; "
                     "most likely first):")
        lines += [_row(t, widths) for t in info["intermediates"]]
    lines += [f"note: {n}" for n in info.get("notes", [])]
    lines += ["", "card skeleton (replace the TODOs, e.g. with the flags they name, and use --write-card):",
              yaml.safe_dump(card, sort_keys=False, default_flow_style=None, width=110).rstrip()]
    return "\n".join(lines)


def _name(tensor: dict) -> str:
    return tensor["name"] if tensor["name"] is not None else "(tensor)"


def _row(tensor: dict, widths: tuple[int, int, int, int]) -> str:
    """One tensor line with its pooling suggestion and, for a fixed-batch intermediate, a mark."""
    hint = f"pooling {tensor['pooling']}" if tensor.get("pooling") else ""
    if tensor.get("pool_axis"):
        hint += f" --pool-axis {tensor['pool_axis']}"
    if tensor.get("embedding_dim") is not None:
        hint += f" -> dim {tensor['embedding_dim']}"
    if tensor.get("fixed_batch"):
        hint += "  [fixed-batch: shape info fixes the batch at 1]"
    cells = [_name(tensor).ljust(widths[0]), tensor["dtype"].ljust(widths[1]), fmt_shape(tensor["shape"]).ljust(widths[2])]
    if widths[3]:
        cells.append((tensor.get("op") or "").ljust(widths[3]))
    return ("  " + "  ".join(cells) + "  " + hint).rstrip()
