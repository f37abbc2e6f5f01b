"""The report's Jinja2 templates and their environment (autoescaping on for every template)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from orchestrator.report.blocks import Labelled, Reading, Strong, Tag
from orchestrator.report.format import DASH, fmt_count


def _dash(value: Any) -> Any:
    """The value, or the dash when it is None (what every missing value shows)."""
    return DASH if value is None else value


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The shared environment; .j2 templates are HTML, so autoescape is forced on for them."""
    env = Environment(loader=PackageLoader("orchestrator.report", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.globals["DASH"] = DASH
    env.filters.update(dash=_dash, thousands=fmt_count)
    # The cell macro draws each typed cell (blocks.py) by its type.
    env.tests.update(tag=lambda v: isinstance(v, Tag), reading=lambda v: isinstance(v, Reading),
                     labelled=lambda v: isinstance(v, Labelled), strong=lambda v: isinstance(v, Strong))
    return env


def render(template: str, **context: Any) -> str:
    """A template rendered with context (values escaped unless they are Markup)."""
    return environment().get_template(template).render(**context)


def text(name: str) -> str:
    """A static file shipped beside the templates (e.g. the stylesheet)."""
    return resources.files("orchestrator.report").joinpath("templates", name).read_text(encoding="utf-8")
