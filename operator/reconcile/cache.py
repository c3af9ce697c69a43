"""What the watches already told us: the latest codekiln resources and (trimmed) children, by owner.

kopf's watch events carry whole objects; keeping the latest one per object lets a reconcile
pass run without a GET of its resource, a GET of its Job or Deployment, or a LIST of its pods
(the API-request budget: about one write per change, not one read per pass). Children are
trimmed to what :mod:`codekiln.operator.reconcile.observe` reads (no pod templates), so 2,000
resources stay small. A miss (a pass started by a timer before any event, tests driving the
reconciler without kopf) falls back to a request.
"""

from __future__ import annotations

from typing import Any

from codekiln.operator.builders import names

Key = tuple[str, str, str]  # (kind, namespace, name)
ChildKey = tuple[str, str]  # (kind, name)
# metadata worth keeping; managedFields and kubectl's last-applied annotation are large and unused.
_META = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "ownerReferences",
         "deletionTimestamp", "creationTimestamp")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def trim_resource(body: dict[str, Any]) -> dict[str, Any]:
    """A codekiln resource without managedFields / last-applied-configuration (a shallow copy)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    if _LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != _LAST_APPLIED}
    return {**body, "metadata": meta}


def trim_child(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of a Job, Pod or Deployment that reconcile reads (status, suspend, replicas, metadata)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    kept_spec = {key: spec[key] for key in ("suspend", "replicas", "completions", "parallelism") if key in spec}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {key: meta[key] for key in _META if key in meta}, "spec": kept_spec,
            "status": obj.get("status") or {}}


def _newer(obj: dict[str, Any], cached: dict[str, Any] | None) -> bool:
    """Whether ``obj`` is at least as new as ``cached`` (a late watch event must not undo our own write)."""
    if cached is None:
        return True
    new = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    old = str((cached.get("metadata") or {}).get("resourceVersion") or "")
    if new.isdigit() and old.isdigit():  # etcd revisions; anything else is opaque: take the latest seen
        return int(new) >= int(old)
    return True


class ObjectCache:
    """Latest watched state. Filled by the kopf handlers; read by reconcile passes through :class:`Context`."""

    def __init__(self) -> None:
        self.resources: dict[Key, dict[str, Any]] = {}
        self.children: dict[Key, dict[ChildKey, dict[str, Any]]] = {}

    def put_resource(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (body["kind"], meta.get("namespace") or "", meta["name"])
        if not _newer(body, self.resources.get(key)):
            return
        self.resources[key] = trim_resource(body)

    def drop_resource(self, key: Key) -> None:
        self.resources.pop(key, None)
        self.children.pop(key, None)

    def resource(self, key: Key) -> dict[str, Any] | None:
        return self.resources.get(key)

    def owner_of(self, obj: dict[str, Any]) -> Key | None:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        kind, name = labels.get(names.LABEL_KIND), labels.get(names.LABEL_NAME)
        return (kind, meta.get("namespace") or "", name) if kind and name else None

    def put_child(self, obj: dict[str, Any], deleted: bool = False) -> Key | None:
        """Record (or forget, when ``deleted``) a child; returns its owner's key."""
        owner = self.owner_of(obj)
        if owner is None:
            return None
        key = (obj.get("kind") or "", obj["metadata"]["name"])
        children = self.children.setdefault(owner, {})
        if deleted:
            children.pop(key, None)
        elif _newer(obj, children.get(key)):
            children[key] = trim_child(obj)
        return owner

    def child(self, owner: Key, kind: str, name: str) -> dict[str, Any] | None:
        return (self.children.get(owner) or {}).get((kind, name))

    def children_of(self, owner: Key, kind: str) -> list[dict[str, Any]] | None:
        """Every cached child of ``kind``; None when nothing of this owner was ever seen (ask the API)."""
        children = self.children.get(owner)
        if children is None:
            return None
        return [obj for (k, _), obj in children.items() if k == kind]
