"""Typed values the section modules hand to their templates: tables and their cells, tags, inline figures.

No HTML is built here: templates/macros.html.j2 draws each type, with every text autoescaped.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Sequence


@dataclass(frozen=True)
class Tag:
    """A small coloured badge (cls: risk, warn, good or '')."""

    text: str
    cls: str = ""


@dataclass(frozen=True)
class Reading:
    """A value, optionally followed by a badge and a second line (e.g. per-source scores)."""

    value: str
    tag: Tag | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Labelled:
    """Lines of 'label: text' with the label in bold (classes per task, top dimensions per class); text None = dash."""

    lines: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Strong:
    """Text shown in bold."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table: header texts, rows of cells, right-aligned (numeric) column indices, an optional class per row.

    The cell macro draws str/number cells as text, None as the dash, and Tag, Reading, Labelled, Strong by type;
    any other cell needs a caller in the section's template (e.g. the models and provenance tables).
    """

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    numeric: Collection[int] = ()
    row_classes: Sequence[str] = ()


@dataclass(frozen=True)
class InlineFigure:
    """A PNG to inline as a base64 data: URI, and its caption."""

    caption: str
    data: str


def inline_figure(png: bytes, caption: str) -> InlineFigure:
    """One PNG ready for the figure macro."""
    return InlineFigure(caption=caption, data=base64.b64encode(png).decode("ascii"))


def inline_figures(figs: Iterable[dict]) -> list[InlineFigure]:
    """Figure dicts ({png, caption or name}) in the given order, ready for the figures macro."""
    return [inline_figure(f["png"], f.get("caption") or f.get("name", "")) for f in figs]


def pretty_json(value: Any) -> str:
    """Pretty JSON text for a <pre> block (sorted keys, anything unknown as its str)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)
