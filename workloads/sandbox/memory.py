"""Memory planning: every slot and session together fit the pod; the server protects itself from the OOM killer.

The budget is ``memoryBudgetMb`` when set, else the memory limit of the server's cgroup (v2
``memory.max`` or v1 ``memory.limit_in_bytes``, when one is set) minus ``serverReserveMb``,
else unbounded (a bare machine). Each execution slot may use at most
``budget / (maxConcurrency + maxSessions)`` MiB in total — its process memory plus its tmpfs
mounts (``workspaceMb + 2·tmpMb``) — so a run that stays within its own limit is never killed
because another run used more. The server lowers its own ``oom_score_adj`` (where allowed) and
every sandboxed program raises its own to 1000, so under pressure the kernel picks a program.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from codekiln.workloads.sandbox.config import SandboxConfig

UNLIMITED = 1 << 62
SERVER_OOM_SCORE_ADJ = -900
# Per-run overhead outside the program's own data: the forked keeper/init processes and page tables.
RUN_OVERHEAD_MB = 96


@dataclass(frozen=True)
class MemoryPlan:
    """How much memory each run may use. ``pod_limit_mb`` is None when no limit was found."""

    pod_limit_mb: int | None
    budget_mb: int | None
    slot_mb: int | None
    max_run_memory_mb: int
    max_session_memory_mb: int
    server_oom_score_adj: int | None


def cgroup_limit_mb(root: str = "/sys/fs/cgroup") -> int | None:
    """The memory limit of this process's cgroup in MiB, or None when unlimited or unknown."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates.append(os.path.join(root, path.lstrip("/"), "memory.max"))
        elif "memory" in controllers.split(","):
            candidates.append(os.path.join(root, "memory", path.lstrip("/"), "memory.limit_in_bytes"))
    for path in candidates:
        with contextlib.suppress(OSError, ValueError):
            with open(path) as fh:
                text = fh.read().strip()
            if text == "max":
                continue
            value = int(text)
            if value < UNLIMITED // 2 and value < (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")):
                return value >> 20
    return None


def protect_server(adj: int = SERVER_OOM_SCORE_ADJ) -> int | None:
    """Lower this process's ``oom_score_adj``; returns the value in effect (None when unreadable)."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write(str(adj))
    try:
        with open("/proc/self/oom_score_adj") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def memory_plan(config: SandboxConfig, pod_limit_mb: int | None = -1) -> MemoryPlan:
    """Clamp per-run memory so ``maxConcurrency`` runs and ``maxSessions`` sessions fit the budget."""
    if pod_limit_mb == -1:
        pod_limit_mb = cgroup_limit_mb()
    budget = config.memory_budget_mb
    if budget is None and pod_limit_mb is not None:
        budget = max(64, pod_limit_mb - config.server_reserve_mb)
    lim, ses = config.limits, config.sessions
    if budget is None:
        return MemoryPlan(pod_limit_mb, None, None, lim.max_memory_mb, ses.max_memory_mb, None)
    slots = config.max_concurrency + ses.max_sessions
    slot_mb = budget // max(1, slots)
    run_mb = max(16, min(lim.max_memory_mb, slot_mb - lim.workspace_mb - 2 * lim.tmp_mb - RUN_OVERHEAD_MB))
    session_mb = max(16, min(ses.max_memory_mb, slot_mb - ses.disk_mb - RUN_OVERHEAD_MB))
    return MemoryPlan(pod_limit_mb, budget, slot_mb, run_mb, session_mb, None)
