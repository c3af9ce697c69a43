"""The Reconciler: one coalesced reconcile loop per resource, dispatching to the per-kind logic.

Any trigger (the resource changed, a child Job/Pod/Deployment changed, a requeue timer)
calls :meth:`Reconciler.trigger`. At most one pass per resource runs at a time; triggers
that arrive meanwhile fold into one more pass. Each pass re-reads the resource, validates
it, lets the kind's reconciler act, and writes status once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from codekiln.operator import metrics
from codekiln.operator.builders import names
from codekiln.operator.reconcile.cache import ObjectCache
from codekiln.operator.reconcile.children import ChildConflict, delete_owned
from codekiln.operator.reconcile.context import Context, Memory
from codekiln.operator.reconcile.gang import reconcile_gang
from codekiln.operator.reconcile.kube import ApiError, KubeClient
from codekiln.operator.reconcile.lifecycle import INVALID_SPEC
from codekiln.operator.reconcile.pipeline import reconcile_pipeline
from codekiln.operator.reconcile.pool import reconcile_pool
from codekiln.operator.status import StatusDraft, find_condition, summarize_ready, write_status
from codekiln.operator.validation import validate_document
from codekiln.operator.version import GROUP_VERSION

log = logging.getLogger("codekiln.operator")
Key = tuple[str, str, str]  # (kind, namespace, name)
KIND_RECONCILERS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "DataPipeline": reconcile_pipeline,
    "PretrainRun": reconcile_gang,
    "RLRun": reconcile_gang,
    "SandboxPool": reconcile_pool,
}
MAX_BACKOFF_S = 60.0
DEBOUNCE_S = 0.1  # triggers within this window (a burst of child events) fold into one pass


class Reconciler:
    """Owns per-resource memory, coalescing, requeue timers and metrics."""

    def __init__(self, client: KubeClient, *, max_concurrent: int = 16, debounce_s: float = DEBOUNCE_S,
                 cache: ObjectCache | None = None):
        self.client = client
        self.cache = cache  # fed by the kopf handlers; None: every pass reads through the API
        self.debounce_s = debounce_s
        self.memory: dict[Key, Memory] = {}
        self.phases = metrics.PhaseTracker()
        self._running: dict[Key, asyncio.Task] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._written_versions: dict[Key, str] = {}
        self._pool_ready: dict[tuple[str, str], bool] = {}
        self._limit = asyncio.Semaphore(max_concurrent)
        self._resync: asyncio.Task | None = None
        self.passes = 0

    # ------------------------------------------------------------ triggering
    def trigger(self, kind: str, namespace: str, name: str, *, resource_version: str | None = None) -> None:
        """Ask for a pass over one resource (no-op for the echo of our own status write)."""
        key = (kind, namespace, name)
        if resource_version is not None and self._written_versions.get(key) == resource_version:
            return
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = asyncio.get_running_loop().create_task(self._loop(key), name=f"reconcile {key}")

    def trigger_later(self, key: Key, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay_s
        existing = self._timers.get(key)
        if existing is not None and not existing.cancelled() and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def start_resync(self, interval_s: float) -> None:
        """Re-trigger every known resource each ``interval_s`` (safety net for a lost event or requeue)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                for key in list(self.memory):
                    self.trigger(*key)

        self._resync = asyncio.get_running_loop().create_task(loop(), name="codekiln resync")

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.trigger(*key)

    def pool_changed(self, namespace: str, pool: str, ready: bool | None) -> list[Key]:
        """RLRuns (seen by this process) waiting on SandboxPool ``pool``, if its readiness changed."""
        if self._pool_ready.get((namespace, pool)) == ready:
            return []
        if ready is None:
            self._pool_ready.pop((namespace, pool), None)
        else:
            self._pool_ready[(namespace, pool)] = ready
        return [key for key, memory in self.memory.items()
                if key[0] == "RLRun" and key[1] == namespace and memory.pool_ref == pool]

    def dependents_of(self, kind: str, namespace: str, name: str) -> list[Key]:
        """Runs (seen by this process) whose ``spec.after`` still waits on this one."""
        return [key for key, memory in self.memory.items()
                if key[1] == namespace and (kind, name) in memory.waits_on]

    def forget(self, key: Key) -> None:
        if self.cache is not None:
            self.cache.drop_resource(key)
        self.memory.pop(key, None)
        self._failures.pop(key, None)
        self._written_versions.pop(key, None)
        self.phases.forget(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def idle(self) -> None:
        """Wait until no pass is running (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*list(self._running.values()), return_exceptions=True)
        await self.client.close()
        self.phases.clear()

    # ------------------------------------------------------------ passes
    async def _loop(self, key: Key) -> None:
        try:
            if self.debounce_s:
                await asyncio.sleep(self.debounce_s)
            while True:
                self._dirty.discard(key)
                async with self._limit:
                    requeue = await self._pass(key)
                if requeue is not None:
                    self.trigger_later(key, requeue)
                if key not in self._dirty:
                    return
        finally:
            self._running.pop(key, None)

    async def _pass(self, key: Key) -> float | None:
        kind = key[0]
        started = time.perf_counter()
        result = "success"
        try:
            return await self.reconcile_once(key)
        except ChildConflict as exc:
            result = "conflict"
            log.warning("%s %s/%s: %s", kind, key[1], key[2], exc)
            return 30.0
        except Exception as exc:  # noqa: BLE001 - a failed pass is retried with backoff, never fatal
            result = "error"
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (failures - 1))
            level = logging.WARNING if isinstance(exc, ApiError | OSError | asyncio.TimeoutError) else logging.ERROR
            log.log(level, "%s %s/%s: reconcile failed (retry in %.1fs): %s", kind, key[1], key[2], delay, exc,
                    exc_info=level == logging.ERROR)
            return delay
        finally:
            self.passes += 1
            metrics.RECONCILES.labels(kind, result).inc()
            metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)

    async def reconcile_once(self, key: Key) -> float | None:
        """Read, validate, reconcile and write status for one resource; returns the requeue delay."""
        kind, namespace, name = key
        body = self.cache.resource(key) if self.cache is not None else None
        from_cache = body is not None
        if body is None:
            body = await self.client.get(GROUP_VERSION, kind, namespace, name)
            if body is not None and self.cache is not None:
                self.cache.put_resource(body)
        if body is None:
            self.forget(key)
            return None
        if body["metadata"].get("deletionTimestamp"):
            return None  # children go with it through their ownerReferences
        memory = self.memory.setdefault(key, Memory())
        draft = StatusDraft(body.get("status") or {}, body["metadata"].get("generation"))
        validated = validate_document({k: v for k, v in body.items() if k != "status"})
        if validated.resource is None:
            _invalid(draft, validated.errors)
            await self._write(key, body, draft)
            metrics.RECONCILES.labels(kind, "invalid").inc()
            return None
        failed = find_condition(draft.new, "Failed")
        if failed and failed.get("reason") == INVALID_SPEC and draft.phase == "Failed":
            draft.set(phase="Pending", message=None)
            draft.condition("Failed", False, "SpecValid", "the spec is valid again")
        ctx = Context(self.client, body, validated.resource, draft, memory, cache=self.cache)
        try:
            await KIND_RECONCILERS[kind](ctx)
        except ChildConflict as exc:
            draft.set(phase=draft.phase or "Pending")
            draft.condition("Created", False, "ChildConflict", str(exc))
            await self._write(key, body, draft)
            raise
        await self._write(key, body, draft)
        if ctx.created:
            await self._drop_orphans(key, ctx.uid, from_cache)
        if ctx.restarted:
            metrics.GANG_RESTARTS.labels(kind, ctx.restarted).inc()
        self._failures.pop(key, None)
        return ctx.requeue_after

    async def _drop_orphans(self, key: Key, uid: str, watched: bool = False) -> None:
        """Children created while the resource was being deleted would dangle: delete them.

        With the watch cache the check costs nothing (a deletion seen meanwhile dropped the entry);
        the garbage collector also removes children whose owner uid no longer exists.
        """
        if watched and self.cache is not None:
            cached = self.cache.resource(key)
            if cached is not None and cached["metadata"].get("uid") == uid:
                return
        current = await self.client.get(GROUP_VERSION, *key)
        if current is None or current["metadata"].get("uid") != uid:
            selector = names.label_selector(names.owner_labels(key[0], key[2]))
            deleted = await delete_owned(self.client, key[1], selector, uid)
            log.info("%s %s/%s was deleted during a pass: removed %d new child(ren)", *key, deleted)

    async def _write(self, key: Key, body: dict[str, Any], draft: StatusDraft) -> None:
        summarize_ready(key[0], draft)
        await write_status(self.client, body, draft)
        if draft.written_version:
            self._written_versions[key] = draft.written_version
        if draft.written_body is not None and self.cache is not None and key in self.cache.resources:
            self.cache.put_resource(draft.written_body)  # the next pass starts from what we wrote
            draft.written_body = None
        self.phases.set(key, draft.phase)


def _invalid(draft: StatusDraft, errors: list[str]) -> None:
    message = "; ".join(errors)
    draft.set(phase="Failed", message=message)
    draft.condition("Failed", True, INVALID_SPEC, message)
