"""`ecglens zoo import-official FM --checkpoint FILE`: flags, --option parsing and the command."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from services.embedding.card import CardError, load_card
from services.embedding.zoo.catalog import zoo_dir
from services.embedding.zoo.official import OFFICIAL, SUMMARY, import_official


def _cli_help() -> str:
    lines = ["Official FMs (the checkpoint is the authors' file, loaded as they save it):"]
    for fm, info in SUMMARY.items():
        lines.append(f"  {fm:<11} {info['input']}; dim {info['embedding_dim']}; licence {info['license']}; "
                     f"{info['source']}; checkpoint: {info['checkpoint']}")
    return "\n".join(lines)


def parse_options(items: list[str] | None) -> dict:
    """`KEY=VALUE` strings to a dict; true/false/yes/no/on/off become booleans, numbers numbers."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CardError(f"--option expects KEY=VALUE, got {item!r}")
        low = value.strip().lower()
        if low in ("true", "yes", "on", "1"):
            parsed: Any = True
        elif low in ("false", "no", "off", "0"):
            parsed = False
        else:
            try:
                parsed = float(low) if "." in low else int(low)
            except ValueError:
                parsed = value.strip()
        options[key.strip()] = parsed
    return options


def _cmd_import_official(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = import_official(args.fm, Path(args.checkpoint), Path(args.out) if args.out else zoo_dir(),
                           name=args.name, force=args.force, options=parse_options(args.option))
    card = load_card(path)
    print(f"{args.fm}: {path}  ({card.name} {card.version}, {card.input.sampling_rate_hz:g} Hz x "
          f"{card.input.num_samples} samples, dim {card.output.embedding_dim}, licence {card.license})")
    print(f"serve it: ecglens serve --model {path}")
    return 0


def add_cli(zoo_subparsers) -> None:
    """Add `zoo import-official FM --checkpoint FILE [--out DIR] [--name NAME] [--force]`."""
    parser = zoo_subparsers.add_parser(
        "import-official",
        help="package an official FM checkpoint (ECGFounder, ST-MEM, MERL, HuBERT-ECG, ECG-FM, ECG-JEPA, "
             "ECG-CPC) as an ONNX model",
        description="Rebuild an official ECG foundation model's architecture, load its published checkpoint "
                    "strictly (every key checked), put the authors' preprocessing and pooling in the graph, "
                    "export ONNX and validate the package with a warm-up batch.\n\n" + _cli_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fm", choices=sorted(OFFICIAL), help="which official FM")
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="the authors' checkpoint file")
    parser.add_argument("--out", help="package root (default: $ECGLENS_ZOO or ~/.cache/ecglens/zoo)")
    parser.add_argument("--name", help="package name (default: the FM's name)")
    parser.add_argument("--force", action="store_true", help="replace an existing package of that name")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="adapter option (repeatable); ecgfounder: filtered=false exports the authors' "
                             "older z-score-only preprocessing instead of filters + z-score; ecg-cpc: window_s=2.5 "
                             "embeds the benchmark's 2.5 s crops instead of 10 s")
    parser.set_defaults(func=_cmd_import_official)
