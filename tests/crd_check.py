"""Check a custom resource against a committed CRD schema excerpt (tests/crd_excerpts/), offline and strict.

kubernetes-validate only warns on custom resources. Here an unknown field is an error (the API server
would silently prune it), and so are wrong types, enums, required fields and minimums. CEL rules
(x-kubernetes-validations) are not evaluated. Subtrees the excerpt omits are reported separately, so a
test can insist that only those validated elsewhere (pod templates) are used.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

EXCERPTS = Path(__file__).resolve().parent / "crd_excerpts"


def load_excerpt(name: str) -> dict:
    """The excerpt tests/crd_excerpts/<name>.yaml (source, group, version, kind, schema)."""
    return yaml.safe_load((EXCERPTS / f"{name}.yaml").read_text())


def _strict(node: Any) -> Any:
    """The schema with unknown properties forbidden wherever upstream lists properties."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def errors(obj: dict, excerpt: dict) -> list[str]:
    """Every way obj breaks the excerpt, as 'path: message'; [] when it conforms."""
    found = []
    expected = f"{excerpt['group']}/{excerpt['version']}"
    if obj.get("apiVersion") != expected or obj.get("kind") != excerpt["kind"]:
        found.append(f"apiVersion/kind: {obj.get('apiVersion')}/{obj.get('kind')} is not {expected}/{excerpt['kind']}")
    validator = jsonschema.Draft7Validator(_strict(copy.deepcopy(excerpt["schema"])))
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        found.append(f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}")
    return found


def omitted_used(obj: Any, schema: dict, path: str = "") -> list[str]:
    """Paths where obj sets a subtree that the excerpt omitted (not checked here)."""
    if "x-ecglens-omitted" in schema:
        return [path] if obj not in (None, {}, []) else []
    if isinstance(obj, dict) and "properties" in schema:
        return [p for key, value in obj.items() if key in schema["properties"]
                for p in omitted_used(value, schema["properties"][key], f"{path}.{key}".lstrip("."))]
    if isinstance(obj, list) and "items" in schema:
        return [p for i, item in enumerate(obj) for p in omitted_used(item, schema["items"], f"{path}[{i}]")]
    return []
