"""Patch formats the API server accepts: JSON merge, JSON patch (RFC 6902), strategic merge."""

from __future__ import annotations

import copy
from typing import Any

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Strategic merge keys for the lists this project's manifests use (subset of the Kubernetes tags).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "name", "ports": "containerPort", "conditions": "type",
    "imagePullSecrets": "name", "tolerations": "key", "ownerReferences": "uid",
}


class PatchError(ValueError):
    """A patch that cannot be applied; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch (``None`` deletes, dicts merge, the rest replaces)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Merge like a merge patch, but merge known lists of objects by their key (e.g. ``name``)."""
    if isinstance(patch, dict):
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value, key)
        return result
    merge_key = MERGE_KEYS.get(field)
    if isinstance(patch, list) and isinstance(target, list) and merge_key:
        merged = [copy.deepcopy(item) for item in target]
        index = {item.get(merge_key): i for i, item in enumerate(merged) if isinstance(item, dict)}
        for item in patch:
            if not isinstance(item, dict) or item.get(merge_key) is None:
                merged.append(copy.deepcopy(item))
            elif item.get("$patch") == "delete":
                merged = [m for m in merged if not (isinstance(m, dict) and m.get(merge_key) == item[merge_key])]
                index = {m.get(merge_key): i for i, m in enumerate(merged) if isinstance(m, dict)}
            elif item[merge_key] in index:
                pos = index[item[merge_key]]
                merged[pos] = strategic_merge_patch(merged[pos], item, "")
            else:
                index[item[merge_key]] = len(merged)
                merged.append(strategic_merge_patch({}, item, ""))
        return merged
    return copy.deepcopy(patch)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _resolve(doc: Any, tokens: list[str], pointer: str) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise PatchError(f"path {pointer!r} does not exist")
    return doc


def _add(doc: Any, pointer: str, value: Any, replace: bool) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return copy.deepcopy(value)
    parent = _resolve(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"replace: path {pointer!r} does not exist")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise PatchError(f"index out of range in {pointer!r}")
    else:
        raise PatchError(f"path {pointer!r} has no container parent")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _split_pointer(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise PatchError(f"remove: path {pointer!r} does not exist")


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch; a failed ``test`` raises :class:`PatchError` (HTTP 422)."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations", status=400)
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"malformed JSON patch operation: {op!r}", status=400)
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, op.get("value"), replace=False)
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "test":
            actual = _resolve(doc, _split_pointer(path), path)
            if actual != op.get("value"):
                raise PatchError(f"the test operation failed: {path} is {actual!r}, not {op.get('value')!r}")
        elif kind in ("move", "copy"):
            source = op.get("from", "")
            value = copy.deepcopy(_resolve(doc, _split_pointer(source), source))
            if kind == "move":
                doc, _ = _remove(doc, source)
            doc = _add(doc, path, value, replace=False)
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}", status=400)
    return doc


def apply_patch(target: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    """Dispatch on the request's content type and return the patched copy."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == JSON_PATCH:
        result = json_patch(target, body)
    elif ctype == MERGE_PATCH:
        result = merge_patch(target, body)
    elif ctype == STRATEGIC_PATCH:
        result = strategic_merge_patch(target, body)
    else:
        raise PatchError(f"the body of the request was in an unknown format - accepted media types include: "
                         f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH} (got {ctype!r})", status=415)
    if not isinstance(result, dict):
        raise PatchError("the patched object is not a JSON object", status=400)
    return result
