"""Per-slot memory cgroups: one memory limit for a whole execution (every process together).

rlimits bound each process; a program that forks can still use ``maxProcesses × memoryMb``.
Where the server may create cgroups (root, a writable cgroup v1 ``memory`` hierarchy or a
cgroup v2 tree with the memory controller), each execution slot gets a cgroup under
``codekiln-sandbox-<pid>`` with ``memory.limit_in_bytes`` / ``memory.max`` set per run; the
sandbox joins it before ``prlimit``/``bwrap`` run. An OOM kill in it is reported as
``MemoryLimitExceeded``. Elsewhere (non-root pods) this is off and the pod's own memory limit
is the outer bound. Stale trees of dead servers are removed at start.
"""

from __future__ import annotations

import contextlib
import os
import re

ROOT = "/sys/fs/cgroup"


class SlotCgroups:
    """Cgroups of the execution slots, or ``enabled = False`` when they cannot be made here."""

    def __init__(self, slots: int, uid_of_slot, *, root: str = ROOT):
        self.version: int | None = None
        self.base: str | None = None
        self.dirs: list[str] = []
        self.reason = ""
        try:
            self._setup(slots, uid_of_slot, root)
        except OSError as exc:
            self.reason = f"cgroups unavailable: {exc}"
            self.close()

    @property
    def enabled(self) -> bool:
        return bool(self.dirs)

    def _setup(self, slots: int, uid_of_slot, root: str) -> None:
        if os.geteuid() != 0:
            raise OSError("the server is not root")
        own = _own_paths()
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            self.version, parent = 2, os.path.join(root, own.get("", "/").lstrip("/"))
        elif os.path.isdir(os.path.join(root, "memory")):
            self.version, parent = 1, os.path.join(root, "memory", own.get("memory", "/").lstrip("/"))
        else:
            raise OSError("no memory cgroup hierarchy")
        _remove_stale(parent)
        self.base = os.path.join(parent, f"codekiln-sandbox-{os.getpid()}")
        os.makedirs(self.base, exist_ok=True)
        if self.version == 2:
            with open(os.path.join(self.base, "cgroup.subtree_control"), "w") as fh:
                fh.write("+memory")
        for i in range(slots):
            path = os.path.join(self.base, f"slot-{i}")
            os.makedirs(path, exist_ok=True)
            self.dirs.append(path)
            uid = uid_of_slot(i)
            if uid is not None:
                os.chown(os.path.join(path, "cgroup.procs"), uid, uid)
        self._write(0, self._limit_file, str(256 << 20))  # prove limits can be written

    @property
    def _limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"

    def _write(self, slot: int, name: str, value: str) -> None:
        with open(os.path.join(self.dirs[slot], name), "w") as fh:
            fh.write(value)

    def procs(self, slot: int) -> str:
        """The slot's ``cgroup.procs`` (a warm sandbox joins it before bwrap starts)."""
        return os.path.join(self.dirs[slot], "cgroup.procs")

    def prepare(self, slot: int, limit_bytes: int) -> tuple[str, int]:
        """Set the slot's memory limit; returns (its cgroup.procs path, OOM kills so far)."""
        with contextlib.suppress(OSError):  # below current usage (v1 refuses): keep the previous limit
            self._write(slot, self._limit_file, str(limit_bytes))
        return os.path.join(self.dirs[slot], "cgroup.procs"), self.oom_kills(slot)

    def oom_kills(self, slot: int) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            with open(os.path.join(self.dirs[slot], name)) as fh:
                match = re.search(r"^oom_kill (\d+)", fh.read(), re.M)
        except OSError:
            return 0
        return int(match.group(1)) if match else 0

    def close(self) -> None:
        """Remove the slot cgroups (they are empty once every execution ended)."""
        for path in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        self.dirs = []
        if self.base:
            with contextlib.suppress(OSError):
                os.rmdir(self.base)


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path ('' is the v2 unified entry)."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def _remove_stale(parent: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            m = re.fullmatch(r"codekiln-sandbox-(\d+)", name)
            if not m or _alive(int(m.group(1))):
                continue
            stale = os.path.join(parent, name)
            with contextlib.suppress(OSError):
                for slot in os.listdir(stale):
                    if os.path.isdir(os.path.join(stale, slot)):
                        os.rmdir(os.path.join(stale, slot))
                os.rmdir(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
