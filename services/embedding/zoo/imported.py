"""Packages in the zoo directory that no builder made (imported or copied in): names, listing and lookup."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from services.embedding.card import CARD_FILE, CardError, ModelCard, load_card
from services.embedding.zoo.catalog import BUILDERS, zoo_dir

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> None:
    """Package names are directory names and --model arguments: simple, and not a built-in zoo model."""
    if not _NAME.match(name):
        raise CardError(f"name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, starting with a "
                        f"letter or digit)")
    if name in BUILDERS:
        raise CardError(f"name {name!r} is a built-in zoo model; choose another --name")


def imported_packages(zoo: Path) -> list[dict]:
    """Listing entries for valid packages in the zoo dir that no builder made (imported or copied in)."""
    zoo = Path(zoo)
    if not zoo.is_dir():
        return []
    entries = []
    for path in sorted(zoo.iterdir()):
        # Dot-directories are imports or builds in progress (staging), never packages.
        if path.name.startswith(".") or path.name in BUILDERS or not (path / CARD_FILE).is_file():
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
    path = Path(zoo or zoo_dir()) / name
    return path if _NAME.match(name) and (path / CARD_FILE).is_file() else None
