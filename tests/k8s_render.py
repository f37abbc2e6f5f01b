"""The subset of kustomize that k8s/ uses, in pure Python, so tests render overlays without kubectl.

Supported: resources (files and directories), patches (strategic merge, by path), namePrefix,
nameSuffix, labels (pairs, includeSelectors, includeTemplates) and images (name, newName, newTag). Anything else in a
kustomization.yaml raises, so a new feature in k8s/ cannot be silently ignored by the tests.
Applied in kustomize's order: patches, then names, then labels, then images.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches", "namePrefix", "nameSuffix", "labels", "images"}

# Lists that strategic merge combines item by item (by this key); every other list is replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath"}

Obj = dict[str, Any]


def render(directory: str | Path) -> list[Obj]:
    """The objects that `kubectl kustomize directory` would print, in resource order."""
    directory = Path(directory)
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unknown = set(kust) - SUPPORTED_KEYS
    if unknown:
        raise ValueError(f"{directory}: kustomize features not supported by this renderer: {sorted(unknown)}")

    objects: list[Obj] = []
    for entry in kust.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]

    for patch_entry in kust.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"{directory}: only `patches: - path: FILE` is supported, got {patch_entry}")
        _apply_patch(objects, yaml.safe_load((directory / patch_entry["path"]).read_text()))

    prefix, suffix = kust.get("namePrefix", ""), kust.get("nameSuffix", "")
    for obj in objects:
        obj["metadata"]["name"] = f"{prefix}{obj['metadata']['name']}{suffix}"

    for label_entry in kust.get("labels", []):
        _apply_labels(objects, label_entry)

    for image in kust.get("images", []):
        _apply_image(objects, image)
    return objects


def strategic_merge(base: Obj, patch: Obj) -> None:
    """Merge patch into base in place: maps recurse, MERGE_KEYS lists merge by key, null deletes."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            strategic_merge(base[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(base.get(key), list):
            merge_key = MERGE_KEYS[key]
            by_key = {item[merge_key]: item for item in base[key]}
            for item in value:
                if item[merge_key] in by_key:
                    strategic_merge(by_key[item[merge_key]], item)
                else:
                    base[key].append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def _apply_patch(objects: list[Obj], patch: Obj) -> None:
    """Strategic-merge patch into the one object of the same kind and name."""
    targets = [obj for obj in objects
               if obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]]
    if len(targets) != 1:
        raise ValueError(f"patch for {patch['kind']}/{patch['metadata']['name']} matches {len(targets)} objects")
    body = {key: value for key, value in patch.items() if key not in ("apiVersion", "kind", "metadata")}
    strategic_merge(targets[0], body)
    strategic_merge(targets[0]["metadata"], {k: v for k, v in patch["metadata"].items() if k != "name"})


def _apply_labels(objects: list[Obj], entry: Obj) -> None:
    """kustomize `labels`: metadata always; pod templates and selectors when asked."""
    if set(entry) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise ValueError(f"unsupported labels entry: {entry}")
    pairs = entry["pairs"]
    selectors = entry.get("includeSelectors", False)
    templates = selectors or entry.get("includeTemplates", False)
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        spec = obj.get("spec", {})
        if templates and "template" in spec:
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if selectors and obj["kind"] == "Service" and "selector" in spec:
            spec["selector"].update(pairs)
        elif selectors and "template" in spec:
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)


def split_image(image: str) -> tuple[str, str | None]:
    """(name, tag) of an image reference; a registry port is not mistaken for a tag."""
    if "@" in image:
        raise ValueError(f"digests are not supported by this renderer: {image}")
    slash, colon = image.rfind("/"), image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, None


def _apply_image(objects: list[Obj], rule: Obj) -> None:
    """kustomize `images`: rename and retag containers whose image name equals rule['name']."""
    if set(rule) - {"name", "newName", "newTag"}:
        raise ValueError(f"unsupported images entry: {rule}")
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag = split_image(container["image"])
            if name == rule["name"]:
                name, tag = rule.get("newName", name), rule.get("newTag", tag)
                container["image"] = f"{name}:{tag}" if tag else name
