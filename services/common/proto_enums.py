"""Text <-> enum for the ecglens.v1 enums that replaced string fields ("knn" <-> PROBE_KIND_KNN).

Each such enum names its values PREFIX_TEXT with PREFIX the enum's name in UPPER_SNAKE (buf's
style), so one rule maps every enum to the lower-case text its deprecated string field carried.
"""
from __future__ import annotations

import re

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def enum_prefix(enum: EnumTypeWrapper) -> str:
    """The prefix of an enum's value names: ProbeKind -> "PROBE_KIND_"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"


def to_enum(enum: EnumTypeWrapper, text: str) -> int:
    """The value whose name is the prefix plus text in upper case; 0 (UNSPECIFIED) for empty or unknown text."""
    name = enum_prefix(enum) + text.upper()
    return enum.Value(name) if text and name in enum.keys() else 0


def from_enum(enum: EnumTypeWrapper, number: int) -> str | None:
    """The lower-case text of a value ("knn"); None for 0 (unspecified) or a number the enum lacks."""
    if not number or number not in enum.values():
        return None
    return enum.Name(number)[len(enum_prefix(enum)):].lower()


def enum_names(enum: EnumTypeWrapper) -> list[str]:
    """The full names of an enum's specified values, in number order (for error messages)."""
    return [name for name, number in sorted(enum.items(), key=lambda item: item[1]) if number]
