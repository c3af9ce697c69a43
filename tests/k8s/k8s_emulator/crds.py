"""CustomResourceDefinitions: turning a CRD into served resources, schemas and scale paths."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kmock import ResourceInfo, resource

from .meta import now

STANDARD_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}


@dataclass(frozen=True)
class ScalePaths:
    """Where the scale subresource reads and writes replicas (JSON paths like ``.spec.replicas``)."""

    spec_replicas: str
    status_replicas: str
    label_selector: str | None = None


# Builtin kinds with a scale subresource; their selector is rendered from spec.selector.matchLabels.
BUILTIN_SCALE = {
    resource("apps", "v1", "deployments"): ScalePaths(".spec.replicas", ".status.replicas"),
    resource("apps", "v1", "statefulsets"): ScalePaths(".spec.replicas", ".status.replicas"),
    resource("apps", "v1", "replicasets"): ScalePaths(".spec.replicas", ".status.replicas"),
}


@dataclass(frozen=True)
class ServedVersion:
    """One served version of a CRD: its resource key, discovery info, schema and scale paths."""

    res: resource
    info: ResourceInfo
    schema: dict[str, Any] | None
    scale: ScalePaths | None
    columns: list[dict[str, Any]] | None = None  # additionalPrinterColumns (server-side printing)


def served_versions(crd: dict[str, Any]) -> list[ServedVersion]:
    """Every served version a CRD declares."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        info = ResourceInfo(
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            kind=names.get("kind"),
            singular=names.get("singular") or (names.get("kind") or "").lower(),
            verbs=STANDARD_VERBS,
            shortnames=names.get("shortNames") or [],
            categories=names.get("categories") or [],
            subresources=[name for name in ("status", "scale") if name in subresources],
        )
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        paths = ScalePaths(scale["specReplicasPath"], scale["statusReplicasPath"],
                           scale.get("labelSelectorPath")) if scale else None
        columns = list(version.get("additionalPrinterColumns") or [])
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp" for c in columns):
            columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
        out.append(ServedVersion(resource(group, version["name"], names.get("plural")), info, schema, paths,
                                 columns))
    return out


def crd_errors(crd: dict[str, Any]) -> list[str]:
    """Minimal CRD checks: names, group, versions, and the name being ``<plural>.<group>``."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    errors = []
    for field in ("plural", "kind"):
        if not names.get(field):
            errors.append(f"spec.names.{field}: Required value")
    if not spec.get("group"):
        errors.append("spec.group: Required value")
    if not spec.get("versions"):
        errors.append("spec.versions: Invalid value: must have exactly one version marked as storage version")
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if (crd.get("metadata") or {}).get("name") != expected:
        errors.append(f"metadata.name: Invalid value: must be spec.names.plural+\".\"+spec.group ({expected})")
    for i, version in enumerate(spec.get("versions") or []):
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            errors.append(f"spec.versions[{i}].schema.openAPIV3Schema: Required value: schemas are required")
    return errors


def established_status(crd: dict[str, Any]) -> dict[str, Any]:
    """The status the API server gives an accepted CRD."""
    spec = crd.get("spec") or {}
    stamp = now()
    return {
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": stamp},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": stamp},
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


def get_path(obj: dict[str, Any], path: str) -> Any:
    """Read a ``.a.b.c`` path (``None`` when absent)."""
    value: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    """Write a ``.a.b.c`` path, creating the intermediate objects."""
    parts = path.strip(".").split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def _selector_string(obj: dict[str, Any], paths: ScalePaths) -> str | None:
    if paths.label_selector:
        return get_path(obj, paths.label_selector)
    match_labels = (get_path(obj, ".spec.selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())) or None


def scale_of(obj: dict[str, Any], paths: ScalePaths) -> dict[str, Any]:
    """Render the ``autoscaling/v1`` Scale of an object."""
    meta = obj.get("metadata") or {}
    status: dict[str, Any] = {"replicas": get_path(obj, paths.status_replicas) or 0}
    selector = _selector_string(obj, paths)
    if selector:
        status["selector"] = selector
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": get_path(obj, paths.spec_replicas) or 0},
        "status": status,
    }
