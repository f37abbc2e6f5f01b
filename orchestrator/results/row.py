"""The base of every typed results.json row: dict in, the same dict (keys, order, values) out."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Mapping

_OMIT = "omit_if_none"
_ROW = "row"


def optional(default: Any = None) -> Any:
    """A field that a freshly built row leaves out of to_dict() while it is None (an optional key)."""
    return field(default=default, metadata={_OMIT: True})


def rows(row_type: type[Row], optional_key: bool = False) -> Any:
    """A list of row_type, converted on from_dict/to_dict; an optional_key defaults to None (key absent)."""
    if optional_key:
        return field(default=None, metadata={_ROW: row_type, _OMIT: True})
    return field(default_factory=list, metadata={_ROW: row_type})


@dataclass(kw_only=True)
class Row:
    """A typed results.json object that remembers the keys it was read with.

    from_dict keeps the key order and presence of the source (`_keys`) and any key the class does not
    declare (`extra`), so to_dict() gives back exactly the dict that was read, even for older or partial
    files. A row built in code has no `_keys`: it writes its declared fields in declaration order, leaving
    out optional() fields that are None.
    """

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    _keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _declared(cls) -> tuple[str, ...]:
        if "_declared_names" not in cls.__dict__:
            cls._declared_names = tuple(f.name for f in fields(cls) if f.name not in ("extra", "_keys"))
        return cls._declared_names

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        """The row of a results.json object; unknown keys go to `extra`, key order is kept."""
        declared = set(cls._declared())
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in declared:
                kwargs[key] = _load(cls._field_meta(key), value)
            else:
                extra[key] = value
        return cls(**kwargs, extra=extra, _keys=tuple(data))

    @classmethod
    def _field_meta(cls, name: str) -> Mapping[str, Any]:
        return cls.__dataclass_fields__[name].metadata

    def to_dict(self) -> dict[str, Any]:
        """The results.json object: the keys it was read with in their order, else the declared fields."""
        out: dict[str, Any] = {}
        declared = self._declared()
        if self._keys is not None:
            for key in self._keys:
                if key in declared:
                    out[key] = self._dump(key)
                elif key in self.extra:
                    out[key] = self.extra[key]
        for key in declared:
            # Fields set after reading (or every field of a row built in code) follow the read keys.
            if key not in out and not self._unset(key):
                out[key] = self._dump(key)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def _unset(self, name: str) -> bool:
        """Whether to_dict leaves the field out: still at its default after reading, or an optional None."""
        value = getattr(self, name)
        if self._keys is None:
            return value is None and bool(self._field_meta(name).get(_OMIT))
        spec = self.__dataclass_fields__[name]
        default = spec.default_factory() if spec.default_factory is not MISSING else spec.default
        return value == default

    def _dump(self, name: str) -> Any:
        value = getattr(self, name)
        if self._field_meta(name).get(_ROW) and isinstance(value, list):
            return [v.to_dict() if isinstance(v, Row) else v for v in value]
        return value


def _load(meta: Mapping[str, Any], value: Any) -> Any:
    """A list of dicts as rows of the field's row type; anything else (None, malformed) as given."""
    row_type = meta.get(_ROW)
    if row_type is not None and isinstance(value, list):
        return [row_type.from_dict(v) if isinstance(v, Mapping) else v for v in value]
    return value
