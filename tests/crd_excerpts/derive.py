"""Cut a small schema excerpt out of a published CRD, so tests check custom resources offline.

    python tests/crd_excerpts/derive.py CRD.yaml --version v1 --repository OWNER/NAME --path PATH \
        --ref TAG --commit SHA [--omit PATH=REASON ...] > tests/crd_excerpts/EXCERPT.yaml

Keeps the served version's openAPIV3Schema minus `status` and descriptions. Each --omit subtree
(dotted path, `[]` for list items) is cut down to its type plus `x-ecglens-omitted: REASON`: the
property names around it stay, so a misspelt sibling is still caught (tests/crd_check.py).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

import yaml


def _strip_descriptions(node: Any) -> Any:
    """The schema without `description` keys (upstream prose, not structure)."""
    if isinstance(node, dict):
        # A property may itself be named "description": only the prose (a string) goes.
        return {k: _strip_descriptions(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_descriptions(v) for v in node]
    return node


def _omit(schema: dict, path: str, reason: str) -> None:
    """Replace the subtree at path (e.g. spec.a.b[].c) by its type and the reason it was cut."""
    holder: dict = schema
    key = ""
    node = schema
    for part in path.split("."):
        holder, key = node["properties"], part.removesuffix("[]")
        node = holder[key]
        if part.endswith("[]"):
            holder, key = node, "items"
            node = node["items"]
    holder[key] = {"type": node.get("type", "object"), "x-ecglens-omitted": reason}


def derive(crd: dict, version: str, omit: dict[str, str]) -> dict:
    """The excerpted openAPIV3Schema of one version of the CRD."""
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strip_descriptions(served["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    for path, reason in omit.items():
        _omit(schema, path, reason)
    return schema


def main() -> None:
    """Print the excerpt, with where it came from, as YAML."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd")
    for flag in ("--version", "--repository", "--path", "--ref", "--commit"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--omit", action="append", default=[], metavar="PATH=REASON")
    args = parser.parse_args()
    with open(args.crd) as handle:
        crd = yaml.safe_load(handle)
    omit = dict(item.split("=", 1) for item in args.omit)
    excerpt = {
        "source": {"repository": args.repository, "path": args.path, "ref": args.ref, "commit": args.commit},
        "group": crd["spec"]["group"], "version": args.version, "kind": crd["spec"]["names"]["kind"],
        "derived_by": "tests/crd_excerpts/derive.py (status and descriptions dropped; omitted subtrees marked)",
        "schema": derive(crd, args.version, omit),
    }
    command = ["python", "tests/crd_excerpts/derive.py", "CRD.yaml", *sys.argv[2:]]
    print(f"# {args.repository}:{args.path} at {args.ref}, CRD.yaml = `git show {args.ref}:{args.path}`")
    print(f"# Regenerate: {shlex.join(command)}")
    yaml.safe_dump(excerpt, sys.stdout, sort_keys=False, width=120)


if __name__ == "__main__":
    main()
