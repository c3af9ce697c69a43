"""Render a Kustomize folder the way ``kubectl kustomize`` does, for the subset codekiln's examples use.

``codekiln validate`` and ``codekiln run --local`` accept a folder with a ``kustomization.yaml``: its
``resources`` (files, or folders with their own kustomization) and its ``patches`` (a ``target`` by
kind/name and a ``patch`` or ``path``: a JSON 6902 list of operations, or a mapping merged as a JSON
merge patch, which is what a strategic merge patch does to a custom resource). Anything else in the
kustomization is refused with a pointer to ``kubectl kustomize``; in a cluster use ``kubectl apply -k``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {"apiVersion", "kind", "resources", "patches"}


class KustomizeError(ValueError):
    """A kustomization codekiln cannot render (the message names the file and the field)."""


def kustomization_file(folder: Path) -> Path | None:
    """The folder's kustomization file, if it has one."""
    return next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()), None)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def render(folder: Path) -> list[dict[str, Any]]:
    """The documents a kustomization folder produces, in ``kubectl kustomize`` order (resources, then patches).

    Args:
        folder: a folder holding a kustomization file.
    """
    path = kustomization_file(folder)
    if path is None:
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    spec = yaml.safe_load(path.read_text()) or {}
    unsupported = sorted(set(spec) - SUPPORTED)
    if unsupported:
        raise KustomizeError(f"{path}: {', '.join(unsupported)}: not supported by codekiln's renderer; "
                             "render with `kubectl kustomize` and pass the output with -f")
    docs: list[dict[str, Any]] = []
    for i, ref in enumerate(spec.get("resources") or []):
        target = (folder / ref).resolve()
        if target.is_dir():
            docs += render(target)
        elif target.is_file():
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d is not None]
        else:
            raise KustomizeError(f"{path}: resources[{i}]: {ref} does not exist")
    for i, entry in enumerate(spec.get("patches") or []):
        docs = _apply_patch(docs, entry, folder, f"{path}: patches[{i}]")
    return docs


def _apply_patch(docs: list[dict[str, Any]], entry: dict[str, Any], folder: Path, where: str) -> list[dict]:
    if "patch" in entry:
        patch = yaml.safe_load(entry["patch"])
    elif "path" in entry:
        patch = yaml.safe_load((folder / entry["path"]).read_text())
    else:
        raise KustomizeError(f"{where}: needs patch or path")
    target = entry.get("target") or {}
    if not target and isinstance(patch, dict):  # a strategic-merge file names its target itself
        target = {"kind": patch.get("kind"), "name": (patch.get("metadata") or {}).get("name")}
    matches = [j for j, d in enumerate(docs)
               if all((d.get("kind") if k == "kind" else (d.get("metadata") or {}).get(k)) == v
                      for k, v in target.items() if k in ("kind", "name", "namespace"))]
    if not matches:
        raise KustomizeError(f"{where}: no resource matches target {target}")
    out = list(docs)
    for j in matches:
        try:
            out[j] = jsonpatch.apply_patch(docs[j], patch) if isinstance(patch, list) else merge_patch(docs[j], patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise KustomizeError(f"{where}: {exc}") from None
    return out
