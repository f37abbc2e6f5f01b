"""Client input echoed into replies and logs, cut to a safe length (a hostile client controls it)."""
from __future__ import annotations

from typing import Any, Sequence

# gRPC sends status details as a trailer (hard limit 16 KiB by default); a longer text would turn the
# intended status into RESOURCE_EXHAUSTED "metadata size exceeds hard limit".
MAX_DETAILS = 1024


def clip(value: Any, limit: int = 64) -> str:
    """repr-free text of value cut to limit characters, saying how long it really was."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def clip_shape(shape: Sequence[int], dims: int = 8) -> str:
    """A shape as [a, b, c], with at most `dims` dimensions spelled out."""
    shown = ", ".join(clip(int(s), 24) for s in list(shape[:dims]))
    return f"[{shown}]" if len(shape) <= dims else f"[{shown}, ... ({len(shape)} dimensions)]"


def clip_details(text: str) -> str:
    """A status message short enough to travel as a gRPC trailer."""
    return clip(text, MAX_DETAILS)


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's text (runtime errors can be pages long)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)
