"""RLRun → SandboxPool wiring: find the pool, wait for it to be Ready, hand out its Service URL."""

from __future__ import annotations

from codekiln.operator.builders import names
from codekiln.operator.reconcile.context import Context
from codekiln.operator.status import find_condition, is_true
from codekiln.operator.version import GROUP_VERSION
from codekiln.workloads import contract

POOL_POLL_S = 10.0


async def resolve_sandbox(ctx: Context) -> tuple[bool, str | None]:
    """(ready, url) for the RLRun's ``spec.sandboxPoolRef``; sets the SandboxPoolReady condition.

    No reference means the run needs no sandbox (e.g. DPO): ready, no URL.
    """
    ref = ctx.resource.spec.sandbox_pool_ref
    ctx.memory.pool_ref = ref.name if ref else None
    if ref is None:
        return True, None
    pool = await ctx.lookup(GROUP_VERSION, "SandboxPool", ref.name)
    if pool is None:
        ctx.draft.condition("SandboxPoolReady", False, "SandboxPoolNotFound",
                            f"SandboxPool {ref.name!r} does not exist in namespace {ctx.namespace!r}; "
                            "the run waits until it is created")
        ctx.requeue(POOL_POLL_S)
        return False, None
    port = int(((pool.get("spec") or {}).get("sandbox") or {}).get("port") or contract.DEFAULT_SANDBOX_PORT)
    url = names.sandbox_url(ref.name, ctx.namespace, port)
    status = pool.get("status") or {}
    if not is_true(status, "Ready"):
        ready, wanted = status.get("readyReplicas", 0), (pool.get("spec") or {}).get("replicas", "?")
        pool_ready = find_condition(status, "Ready") or {}
        if pool_ready.get("reason") == "SandboxUnavailable":  # a misconfigured pool: say why, not just "waiting"
            ctx.draft.condition("SandboxPoolReady", False, "SandboxUnavailable",
                                f"SandboxPool {ref.name!r} cannot isolate runs: {pool_ready.get('message')}")
        else:
            ctx.draft.condition("SandboxPoolReady", False, "SandboxPoolNotReady",
                                f"SandboxPool {ref.name!r} has {ready}/{wanted} ready replicas; waiting for Ready")
        ctx.requeue(POOL_POLL_S)
        return False, url
    ctx.draft.condition("SandboxPoolReady", True, "SandboxPoolReady", f"sandboxes at {url}")
    return True, url
