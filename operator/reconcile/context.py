"""What one reconcile pass works with: the fresh object, its validated model, the status draft."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from codekiln.operator.builders import names
from codekiln.operator.reconcile.children import ensure
from codekiln.operator.reconcile.kube import KubeClient
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

    async def ensure(self, manifest: dict[str, Any], *, update: bool = False) -> dict[str, Any]:
        """Create (or adopt our own existing) child; see :func:`children.ensure`."""
        obj, created = await ensure(self.client, manifest, self.uid, update=update)
        self.created += created
        return obj

    async def ensure_all(self, manifests: list[dict[str, Any]], *, update: bool = False) -> None:
        for manifest in manifests:
            await self.ensure(manifest, update=update)

    def requeue(self, seconds: float) -> None:
        """Ask for another pass after ``seconds`` (the earliest request wins)."""
        seconds = max(0.05, float(seconds))
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)
