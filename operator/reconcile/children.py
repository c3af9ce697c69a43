"""Idempotent child management: create what is missing, update in place, never touch foreign objects."""

from __future__ import annotations

from typing import Any

from codekiln.operator.reconcile.kube import ApiError, KubeClient
from codekiln.operator.reconcile.observe import owned_by

# Fields of each kind that are brought back to the desired state on a spec change.
MUTABLE_FIELDS = {
    "ConfigMap": ("data",),
    "Deployment": ("spec",),
    "Service": ("spec",),
    "NetworkPolicy": ("spec",),
    "Role": ("rules",),
    "RoleBinding": ("subjects",),
}
# Every kind a resource may own, for TTL cleanup (apiVersion, kind).
OWNED_KINDS = (
    ("batch/v1", "Job"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apps/v1", "Deployment"), ("networking.k8s.io/v1", "NetworkPolicy"),
)


class ChildConflict(Exception):
    """A child's name is taken by an object this resource does not own."""


async def ensure(client: KubeClient, manifest: dict[str, Any], uid: str, *, update: bool = False) -> tuple[dict, bool]:
    """Create ``manifest`` unless it exists; returns (object, created).

    An existing object must be controlled by ``uid`` (else :class:`ChildConflict`); with
    ``update`` its mutable fields are patched back to the manifest.
    """
    meta = manifest["metadata"]
    try:
        return await client.create(manifest), True
    except ApiError as exc:
        if exc.status != 409:
            raise
    existing = await client.get(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    if existing is None:  # deleted between create and get: the next reconcile creates it
        raise ApiError(409, "Conflict", f"{manifest['kind']} {meta['name']} is being deleted")
    if not owned_by(existing, uid):
        raise ChildConflict(f"{manifest['kind']} {meta['name']} already exists and is not owned by this resource")
    fields = MUTABLE_FIELDS.get(manifest["kind"], ()) if update else ()
    patch = {key: manifest[key] for key in fields if manifest.get(key) != existing.get(key)}
    if patch:
        patch["metadata"] = {"labels": meta.get("labels", {})}
        existing = await client.patch(manifest["apiVersion"], manifest["kind"], meta["namespace"],
                                      meta["name"], patch) or existing
    return existing, False


async def ensure_all(client: KubeClient, manifests: list[dict[str, Any]], uid: str, *, update: bool = False) -> int:
    """Ensure every manifest in order; returns how many were created."""
    created = 0
    for manifest in manifests:
        _, was_created = await ensure(client, manifest, uid, update=update)
        created += was_created
    return created


async def delete_owned(client: KubeClient, namespace: str, labels: str, uid: str) -> int:
    """Delete every child (of the kinds codekiln creates) carrying ``labels`` and owned by ``uid``."""
    deleted = 0
    for api_version, kind in OWNED_KINDS:
        for obj in await client.list(api_version, kind, namespace, labels):
            if owned_by(obj, uid) and await client.delete(api_version, kind, namespace, obj["metadata"]["name"]):
                deleted += 1
    return deleted
