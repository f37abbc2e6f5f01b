"""HTML building blocks: every value is escaped unless it is Raw; images are inline data: URIs."""
from __future__ import annotations

import base64
import html
import json
from typing import Any, Iterable, Sequence

from orchestrator.report.format import DASH


class Raw(str):
    """Text already rendered as HTML; the table builder inserts it unescaped."""


def esc(value: Any) -> str:
    """HTML-escaped text of any value; None becomes the dash."""
    return DASH if value is None else html.escape(str(value), quote=True)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None,
           numeric: Iterable[int] = ()) -> str:
    """An HTML table; cells are escaped unless they are Raw, numeric columns are right-aligned."""
    numeric = set(numeric)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(('<td class="num">' if j in numeric else "<td>")
                        + (c if isinstance(c, Raw) else esc(c)) + "</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_html(png: bytes, caption: str) -> str:
    """An <img> with the PNG inlined as a base64 data: URI, and its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def para(text: str, cls: str = "") -> str:
    """An escaped paragraph."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def details_html(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (no JavaScript needed)."""
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def json_block(value: Any) -> str:
    """Pretty JSON in an escaped <pre>."""
    return f"<pre>{esc(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


def badge(text: str, cls: str = "") -> str:
    """A small coloured badge (cls: risk, warn, good or '')."""
    return f'<span class="tag {cls}">{esc(text)}</span>'


def figures_html(figs: Sequence[dict], grid: bool = False) -> str:
    """Figures in the given order, side by side when grid is set."""
    html_figs = "".join(figure_html(f["png"], f.get("caption") or f.get("name", "")) for f in figs)
    return f'<div class="figs">{html_figs}</div>' if grid and html_figs else html_figs
