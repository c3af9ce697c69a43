"""The change journal: every write gets the next global resourceVersion and one watch event.

Watchers resume from any resourceVersion still in the journal; older ones get ``410 Gone``,
as when etcd has compacted the history.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
from dataclasses import dataclass, field
from typing import Any

from kmock import resource


@dataclass(frozen=True)
class Change:
    """One journal entry: the resourceVersion, the resource, the event type and the object states."""

    rv: int
    res: resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass
class Journal:
    """Ordered, bounded list of changes with a wake-up signal for live watchers."""

    limit: int = 50_000
    counter: int = 1
    changes: list[Change] = field(default_factory=list)
    compacted_rv: int = 0  # changes with rv <= this are no longer available to watchers
    _wakeup: asyncio.Event | None = None

    def next_rv(self) -> int:
        """Allocate the next global resourceVersion."""
        self.counter += 1
        return self.counter

    def record(self, rv: int, res: resource, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Append a change and wake up the watchers."""
        self.changes.append(Change(rv, res, type_, copy.deepcopy(obj), old))
        if len(self.changes) > self.limit:
            drop = len(self.changes) - self.limit // 2
            self.compacted_rv = self.changes[drop - 1].rv
            del self.changes[:drop]
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: older resourceVersions now answer 410."""
        self.compacted_rv = self.counter
        self.changes.clear()

    def is_too_old(self, rv: int) -> bool:
        """Whether a watch from ``rv`` can no longer be served."""
        return rv < self.compacted_rv

    def since(self, rv: int) -> list[Change]:
        """Changes strictly after ``rv``."""
        return self.changes[bisect.bisect_right(self.changes, rv, key=lambda c: c.rv):]

    def waiter(self) -> asyncio.Event:
        """An event set by the next recorded change."""
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup
