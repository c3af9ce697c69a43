"""LIST and WATCH: selectors, pagination, resumable watches, 410 Gone, bookmarks and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from kmock import KubernetesError, Request, resource

from .selectors import Predicate, SelectorError, make_matcher

if TYPE_CHECKING:
    from .emulator import Emulator

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _matcher(request: Request) -> Predicate:
    try:
        return make_matcher(request.params.get("labelSelector"), request.params.get("fieldSelector"))
    except SelectorError as exc:
        raise KubernetesError(status=400, reason="BadRequest", message=str(exc), details={}) from None


def _in_scope(obj: dict[str, Any], namespace: str | None, name: str | None) -> bool:
    md = obj.get("metadata") or {}
    return (namespace is None or md.get("namespace") == namespace) and (name is None or md.get("name") == name)


def _api_version(res: resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def list_objects(emulator: Emulator, request: Request, res: resource, info: Any) -> dict[str, Any]:
    """GET on a collection: matching objects sorted by namespace/name, with ``limit``/``continue`` paging."""
    match = _matcher(request)
    namespace = request.namespace if info.namespaced else None
    # Stored versions are never mutated in place (every write stores a new dict), and the response is
    # serialised at once: no copies needed.
    items = [obj for _, obj in emulator.live_objects(res) if _in_scope(obj, namespace, None) and match(obj)]
    items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
    start = int(request.params.get("continue") or 0)
    limit = int(request.params.get("limit") or 0)
    end = start + limit if limit > 0 else len(items)
    metadata: dict[str, Any] = {"resourceVersion": str(emulator.journal.counter)}
    if end < len(items):
        metadata["continue"] = str(end)
        metadata["remainingItemCount"] = len(items) - end
    return {"apiVersion": _api_version(res), "kind": f"{info.kind}List", "metadata": metadata,
            "items": items[start:end]}


def _gone(rv: str, oldest: int) -> dict[str, Any]:
    return {"type": "ERROR", "object": {
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
        "message": f"too old resource version: {rv} ({oldest})"}}


def _translate(type_: str, obj: dict[str, Any], old: dict[str, Any] | None, match: Predicate) -> str | None:
    """The event a selector-filtered watch sees: objects entering/leaving the selection are ADDED/DELETED."""
    now_in = match(obj)
    if type_ != "MODIFIED":
        return type_ if now_in else None
    was_in = old is not None and match(old)
    if now_in and was_in:
        return "MODIFIED"
    if now_in:
        return "ADDED"
    return "DELETED" if was_in else None


def watch(emulator: Emulator, request: Request, res: resource, info: Any) -> AsyncIterator[Any]:
    """Start a watch stream (validated eagerly, so a bad selector is a plain 400, not a stream error)."""
    match = _matcher(request)
    params = request.params
    since = params.get("resourceVersion") or ""
    if since not in ("", "0") and not since.isdigit():
        raise KubernetesError(status=400, reason="BadRequest", details={},
                              message=f"invalid resource version: {since!r}")
    timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
    return _stream(emulator, res, info, request.namespace if info.namespaced else None, request.name, match, since,
                   bookmarks=params.get("allowWatchBookmarks") == "true",
                   initial=params.get("sendInitialEvents") == "true", timeout=timeout)


async def _stream(emulator: Emulator, res: resource, info: Any, namespace: str | None, name: str | None,
                  match: Predicate, since: str, *, bookmarks: bool, initial: bool,
                  timeout: float | None) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    journal = emulator.journal
    deadline = loop.time() + timeout if timeout is not None else None
    yield b""  # send the headers now, even if nothing happens for a while

    def bookmark(extra: dict[str, str] | None = None) -> dict[str, Any]:
        md: dict[str, Any] = {"resourceVersion": str(journal.counter)}
        if extra:
            md["annotations"] = extra
        return {"type": "BOOKMARK", "object": {"apiVersion": _api_version(res), "kind": info.kind, "metadata": md}}

    if since in ("", "0") or initial:
        last = journal.counter
        for _, obj in emulator.live_objects(res):
            if _in_scope(obj, namespace, name) and match(obj):
                yield {"type": "ADDED", "object": obj}
        if initial and bookmarks:
            yield bookmark({INITIAL_EVENTS_END: "true"})
    else:
        last = int(since)
        if journal.is_too_old(last):
            yield _gone(since, journal.compacted_rv)
            return

    next_bookmark = loop.time() + emulator.bookmark_interval
    while True:
        if journal.is_too_old(last):  # this watcher fell behind the journal's retention
            yield _gone(str(last), journal.compacted_rv)
            return
        for change in journal.since(last):
            last = change.rv
            if change.res != res or not _in_scope(change.obj, namespace, name):
                continue
            kind = _translate(change.type, change.obj, change.old, match)
            if kind is not None:
                yield {"type": kind, "object": change.obj}
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        if bookmarks and now >= next_bookmark:
            yield bookmark()
            next_bookmark = now + emulator.bookmark_interval
        wake_at = min(t for t in (deadline, next_bookmark if bookmarks else None, now + 60.0) if t is not None)
        waiter = journal.waiter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout=max(0.0, wake_at - now))
