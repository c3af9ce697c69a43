"""What one reconcile pass works with: the fresh object, its validated model, the status draft."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from codekiln.operator.builders import names
from codekiln.operator.reconcile.cache import ObjectCache
from codekiln.operator.reconcile.children import ensure
from codekiln.operator.reconcile.kube import KubeClient
from codekiln.operator.reconcile.observe import owned_by
from codekiln.operator.resources import Resource
from codekiln.operator.status import StatusDraft


@dataclass
class Memory:
    """Per-resource facts the operator keeps between passes (lost on restart; only an optimisation)."""

    ensured_generation: int | None = None
    cleaned_up: bool = False
    pool_ref: str | None = None  # RLRun: the SandboxPool it waits on (to re-reconcile when it changes)
    waits_on: frozenset[tuple[str, str]] = frozenset()  # (kind, name) of spec.after runs not yet Succeeded


@dataclass
class Context:
    client: KubeClient
    body: dict[str, Any]
    resource: Resource
    draft: StatusDraft
    memory: Memory
    requeue_after: float | None = None
    restarted: str | None = None  # cause of a gang restart in this pass: failure or disruption (metrics)
    created: int = 0  # children created in this pass
    notes: list[str] = field(default_factory=list)
    cache: ObjectCache | None = None  # what the watches delivered (None: every read is a request)

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def uid(self) -> str:
        return self.body["metadata"]["uid"]

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")

    @property
    def now(self) -> datetime:
        return self.draft.now

    @property
    def owner_selector(self) -> str:
        return names.label_selector(names.owner_labels(self.kind, self.name))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    async def ensure(self, manifest: dict[str, Any], *, update: bool = False) -> dict[str, Any]:
        """Create (or adopt our own existing) child; see :func:`children.ensure`."""
        obj, created = await ensure(self.client, manifest, self.uid, update=update)
        self.created += created
        if self.cache is not None and obj and obj.get("kind") in ("Job", "Deployment"):
            self.cache.put_child(obj)  # the next pass need not wait for the watch event
        return obj

    def _children_known(self) -> bool:
        """Whether the cache can answer for this resource's children without asking the API."""
        return self.cache is not None and self.cache.children.get(self.key) is not None

    async def child(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """A Job or Deployment of this resource: from the watch cache, else one GET."""
        if self.cache is not None:
            found = self.cache.child(self.key, kind, name)
            if found is not None:
                return found
        return await self.client.get(api_version, kind, self.namespace, name)

    async def owned(self, api_version: str, kind: str, labels: dict[str, str] | None = None, *,
                    check_owner: bool = True) -> list[dict[str, Any]]:
        """Children of ``kind`` labelled for this resource (and with ``labels``): cache, else one LIST.

        Args:
            api_version: of ``kind`` (for the LIST fallback).
            kind: Job, Pod or Deployment (the kinds the operator watches).
            labels: extra labels to match (e.g. the gang attempt).
            check_owner: keep only objects whose ownerReference is this resource (pods are owned by their Job).
        """
        if self._children_known():
            assert self.cache is not None
            found = self.cache.children_of(self.key, kind) or []
        elif self.cache is not None and not self.draft.new.get("startTime"):
            found = []  # never started and the watches saw no child: there is none (a create would 409 anyway)
        else:
            selector = self.owner_selector
            if labels:
                selector += "," + names.label_selector(labels)
            found = await self.client.list(api_version, kind, self.namespace, selector)
        wanted = labels or {}
        return [obj for obj in found if (owned_by(obj, self.uid) or not check_owner)
                and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]

    async def lookup(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """Another codekiln resource in this namespace (a pool, a ``spec.after`` run): cache, else GET."""
        if self.cache is not None:
            found = self.cache.resource((kind, self.namespace, name))
            if found is not None:
                return found
        return await self.client.get(api_version, kind, self.namespace, name)

    async def ensure_all(self, manifests: list[dict[str, Any]], *, update: bool = False) -> None:
        for manifest in manifests:
            await self.ensure(manifest, update=update)

    def requeue(self, seconds: float) -> None:
        """Ask for another pass after ``seconds`` (the earliest request wins)."""
        seconds = max(0.05, float(seconds))
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)
