"""The zoo: named, deterministically built model packages, and resolution of --model arguments."""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

from services.embedding.card import CARD_FILE, CardError, load_card, parse_card, write_card
from services.embedding.zoo.catalog import BUILDERS, zoo_dir
from services.embedding.zoo.imported import find_imported, imported_packages
from services.embedding.zoo.staging import staged_package

log = logging.getLogger(__name__)


def _builder(name: str):
    if name not in BUILDERS:
        raise CardError(f"unknown zoo model {name!r}; known: {', '.join(sorted(BUILDERS))}")
    return importlib.import_module(BUILDERS[name])


def build_package(name: str, out_root: Path | None = None, force: bool = False) -> Path:
    """Build one zoo package into out_root/name atomically (a crash never leaves half a package)."""
    out_root = Path(out_root or zoo_dir())
    target = out_root / name
    if (target / CARD_FILE).is_file() and not force:
        return target
    with staged_package(out_root, name) as staging:
        card = parse_card(_builder(name).build(staging), f"zoo:{name}")
        write_card(card, staging)
        load_card(staging)  # the package must validate before it is published
    log.info("built zoo package %s in %s", name, target)
    return target


def list_zoo() -> list[dict]:
    """Listing entries {name, version, kind, objective, embedding_dim, params, built, path}."""
    entries = []
    for name in sorted(BUILDERS):
        entry = _builder(name).describe()
        path = zoo_dir() / name
        entry.update(built=(path / CARD_FILE).is_file(), path=str(path))
        entries.append(entry)
    return entries + imported_packages(zoo_dir())


def resolve_package(model: str) -> Path:
    """A --model argument (package directory or zoo name) to a package directory, building zoo models on demand."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / CARD_FILE).is_file():
            raise CardError(f"{path} is a directory without {CARD_FILE}; it is not a model package")
        return path
    if model in BUILDERS:
        return build_package(model)
    imported = find_imported(model)
    if imported is not None:
        return imported
    raise CardError(f"--model {model!r} is neither a package directory nor a zoo model "
                    f"({', '.join(sorted(BUILDERS))})")
