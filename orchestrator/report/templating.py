"""The report's Jinja2 templates and their environment (autoescaping on for every template)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The shared environment; .j2 templates are HTML, so autoescape is forced on for them."""
    return Environment(loader=PackageLoader("orchestrator.report", "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
                       keep_trailing_newline=True)


def render(template: str, **context: Any) -> str:
    """A template rendered with context (values escaped unless they are Markup)."""
    return environment().get_template(template).render(**context)


def text(name: str) -> str:
    """A static file shipped beside the templates (e.g. the stylesheet)."""
    return resources.files("orchestrator.report").joinpath("templates", name).read_text(encoding="utf-8")
