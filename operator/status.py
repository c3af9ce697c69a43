"""The one status writer: Kubernetes-style conditions, phase, observedGeneration, Events on transitions.

Reconcilers fill a :class:`StatusDraft` from the resource's current status, then call
:func:`write_status` once: it patches only what changed (``status`` subresource, merge
patch) and, after the write succeeded, posts an Event per condition transition.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from codekiln.operator.reconcile.kube import ApiError, KubeClient
from codekiln.operator.version import GROUP_VERSION

log = logging.getLogger("codekiln.operator.status")
TERMINAL_PHASES = ("Succeeded", "Failed")
# Conditions whose turning True is worth a Warning event.
WARNING_CONDITIONS = {"Failed", "Restarting"}
# Conditions announced (an Event) even when they first appear False: a run starting to wait on spec.after.
ANNOUNCE_WHEN_NEW = {"DependenciesReady"}
RUN_READY_PHASES = ("Running", "Succeeded")


def summarize_ready(kind: str, draft: StatusDraft) -> None:
    """Runs get a ``Ready`` condition (the printer column, kstatus and Argo CD read it): True while
    Running or after Succeeded. SandboxPool sets its own (serving). No Event: the phase's conditions have one.
    """
    if kind == "SandboxPool" or not draft.phase:
        return
    ready = draft.phase in RUN_READY_PHASES
    draft.condition("Ready", ready, draft.phase, f"phase {draft.phase}", announce=False)


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def find_condition(status: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for item in (status or {}).get("conditions") or []:
        if item.get("type") == type_:
            return item
    return None


def is_true(status: dict[str, Any] | None, type_: str) -> bool:
    found = find_condition(status, type_)
    return bool(found and found.get("status") == "True")


@dataclass
class Transition:
    """A condition that changed status (or a new reason) in this reconcile."""

    type: str
    status: str
    reason: str
    message: str

    @property
    def event_type(self) -> str:
        return "Warning" if self.status == "True" and self.type in WARNING_CONDITIONS else "Normal"


@dataclass
class StatusDraft:
    """The status being computed in one reconcile, starting from what the server has."""

    old: dict[str, Any]
    generation: int | None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    new: dict[str, Any] = field(init=False)
    transitions: list[Transition] = field(default_factory=list)
    written_version: str | None = None  # resourceVersion our last status write produced
    written_body: dict[str, Any] | None = None  # the object our last status write returned

    def __post_init__(self) -> None:
        self.new = copy.deepcopy(self.old or {})
        self.new.setdefault("conditions", [])
        if self.generation is not None:
            self.new["observedGeneration"] = self.generation

    @property
    def phase(self) -> str | None:
        return self.new.get("phase")

    def set(self, **fields: Any) -> StatusDraft:
        """Set top-level status fields (camelCase names)."""
        self.new.update(fields)
        return self

    def condition(self, type_: str, status: bool | str, reason: str, message: str = "", *,
                  announce: bool = True) -> StatusDraft:
        """Set a condition; ``lastTransitionTime`` moves only when the status flips.

        Args:
            type_, status, reason, message: the condition.
            announce: post an Event for a transition (False for summary conditions such as a run's Ready).
        """
        value = status if isinstance(status, str) else ("True" if status else "False")
        conditions: list[dict[str, Any]] = self.new["conditions"]
        current = next((c for c in conditions if c.get("type") == type_), None)
        if current is None:
            current = {"type": type_}
            conditions.append(current)
        flipped = current.get("status") != value
        announce = announce and (value == "True" or current.get("status") is not None
                                 or type_ in ANNOUNCE_WHEN_NEW)
        if (flipped or current.get("reason") != reason) and announce:
            self.transitions.append(Transition(type_, value, reason, message))
        if flipped or "lastTransitionTime" not in current:
            current["lastTransitionTime"] = now_iso(self.now)
        current.update(status=value, reason=reason, message=message)
        if self.generation is not None:
            current["observedGeneration"] = self.generation
        return self

    def clear(self, type_: str, reason: str, message: str = "") -> StatusDraft:
        """Set a condition False, but only if it exists (keeps fresh resources' lists short)."""
        if find_condition(self.new, type_) is not None:
            self.condition(type_, False, reason, message)
        return self

    def mark_written(self) -> None:
        """The draft was written: later changes are diffed against it, its Events are posted."""
        self.old = copy.deepcopy(self.new)
        self.transitions.clear()

    def changes(self) -> dict[str, Any]:
        """Top-level fields that differ from the server's status (merge-patch body)."""
        old = self.old or {}
        out = {key: value for key, value in self.new.items() if old.get(key) != value}
        for key in old:
            if key not in self.new:
                out[key] = None
        return out


async def write_status(client: KubeClient, body: dict[str, Any], draft: StatusDraft) -> bool:
    """Patch the status subresource with the draft's changes, then post Events for its transitions.

    Returns False when there was nothing to write or the resource is gone.
    """
    changes = draft.changes()
    meta = body["metadata"]
    if not changes:
        return False
    patched = await client.patch(GROUP_VERSION, body["kind"], meta["namespace"], meta["name"],
                                 {"status": changes}, subresource="status")
    if patched is None:
        return False
    draft.written_version = (patched.get("metadata") or {}).get("resourceVersion")
    draft.written_body = patched
    transitions = list(draft.transitions)
    draft.mark_written()
    event = summarize(transitions)
    if event is not None:
        await post_event(client, body, *event)
    return True


def summarize(transitions: list[Transition]) -> tuple[str, str, str] | None:
    """One Event per status write: (reason, message, type) of its transitions, the most telling first.

    A Warning transition leads (Failed, Restarting); otherwise the last one to turn True (e.g.
    StageRunning after StageStarted in the same pass, Ready over Progressing=False), else the last.
    The other transitions' messages follow, so nothing is lost, at one API request per write
    instead of one per condition.
    """
    if not transitions:
        return None
    truthy = [t for t in transitions if t.status == "True"]
    lead = next((t for t in transitions if t.event_type == "Warning"), (truthy or transitions)[-1])
    others = [f"{t.reason}: {t.message or t.type}" for t in transitions if t is not lead]
    message = "; ".join([lead.message or lead.type, *others])
    return lead.reason, message, lead.event_type


async def post_event(client: KubeClient, body: dict[str, Any], reason: str, message: str,
                     event_type: str = "Normal") -> None:
    """Record a core/v1 Event on the resource (best effort: a lost Event never fails a reconcile)."""
    meta = body["metadata"]
    stamp = now_iso()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": GROUP_VERSION, "kind": body["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": "codekiln-operator"},
        "reportingComponent": "codekiln-operator",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        await client.create(event)
    except (ApiError, OSError) as exc:
        log.debug("event %s on %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], exc)
