"""A minimal ``/openapi/v3`` so that client-go tools (Helm, kubectl) use server-side field validation.

client-go asks OpenAPI whether a kind's PATCH operation accepts ``fieldValidation``; when it does, the
client skips its own schema validation and sends ``?fieldValidation=Strict`` instead, which the emulator
honours. The documents list an operation per served resource, with no schemas.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kmock import resource


def _gv_path(res: resource) -> str:
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


def index(resources: dict[resource, Any]) -> dict[str, Any]:
    """The ``/openapi/v3`` discovery document: one entry per served group-version."""
    paths = {}
    for res in resources:
        if res.version is None:
            continue
        gv = _gv_path(res)
        digest = hashlib.sha1(gv.encode()).hexdigest()[:16]
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def group_version(resources: dict[resource, Any], gv: str) -> dict[str, Any] | None:
    """The OpenAPI document of one group-version (``api/v1``, ``apis/apps/v1``), or None if unknown."""
    paths: dict[str, Any] = {}
    for res, info in resources.items():
        if _gv_path(res) != gv or res.plural is None:
            continue
        gvk = {"group": res.group, "version": res.version, "kind": info.kind}
        prefix = f"/{gv}/namespaces/{{namespace}}" if info.namespaced else f"/{gv}"
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}}
                           for name in ("dryRun", "fieldManager", "fieldValidation", "force")],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{prefix}/{res.plural}/{{name}}"] = {"patch": operation, "put": operation}
        paths[f"{prefix}/{res.plural}"] = {"post": operation}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.30.0"}, "paths": paths,
            "components": {"schemas": {}}}
