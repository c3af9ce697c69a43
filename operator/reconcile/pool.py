"""SandboxPool: Deployment + Service + deny-egress NetworkPolicy; status mirrors the Deployment for scaling."""

from __future__ import annotations

from codekiln.operator.builders import sandbox as sandbox_builders
from codekiln.operator.builders.children import desired_children
from codekiln.operator.reconcile import observe
from codekiln.operator.reconcile.context import Context
from codekiln.operator.status import now_iso, post_event
from codekiln.workloads.sandbox.config import EXIT_SANDBOX_UNAVAILABLE

POLL_UNTIL_READY_S = 15.0
ISOLATION_HINT = ("Per-run isolation needs user namespaces in the pod: install the chart's seccomp profile "
                  "(sandboxSeccomp.install) and set spec.seccompLocalhostProfile: codekiln/sandbox.json, "
                  "spec.hostUsers: false and spec.procMount: Unmasked, or use a runtimeClassName that allows them")


async def reconcile_pool(ctx: Context) -> None:
    """One pass over a SandboxPool (a long-running service: it has no terminal phase)."""
    draft, spec = ctx.draft, ctx.resource.spec
    if ctx.memory.ensured_generation != ctx.generation:
        await ctx.ensure_all(desired_children(ctx.resource), update=True)
        ctx.memory.ensured_generation = ctx.generation
    deployment = await ctx.child("apps/v1", "Deployment", ctx.name)
    replicas, ready = observe.deployment_counts(deployment)
    draft.set(replicas=replicas, readyReplicas=ready, selector=sandbox_builders.selector_string(ctx.resource))
    if not draft.new.get("startTime"):
        draft.set(startTime=now_iso(ctx.now))
    if spec.replicas == 0:
        draft.set(phase="Pending")
        draft.condition("Ready", False, "ScaledToZero", "spec.replicas is 0")
        draft.clear("Progressing", "ScaledToZero", "spec.replicas is 0")
        return
    # Ready = serving: at least the minimum ready. Scaling up or down (an autoscaler, kubectl scale) moves
    # Progressing, never Ready, so RLRuns on the pool keep running.
    minimum = min_ready_replicas(spec)
    counts = f"{ready}/{spec.replicas} sandbox server(s) ready"
    serving = ready >= minimum
    if serving:
        draft.set(phase="Running")
        draft.condition("Ready", True, "AllReplicasReady" if ready >= spec.replicas else "MinimumReplicasReady",
                        f"{counts} (minimum {minimum})")
    else:
        draft.set(phase="Pending")
    if ready >= spec.replicas:
        draft.clear("Progressing", "ScalingComplete", counts)
        return
    draft.condition("Progressing", True, "ScalingUp" if replicas <= spec.replicas else "ScalingDown", counts)
    ctx.requeue(POLL_UNTIL_READY_S)
    if deployment is None or not replicas:  # no pod reported yet: nothing to inspect or replace
        if not serving:
            draft.condition("Ready", False, "ReplicasNotReady", counts)
        return
    pods = await ctx.client.list("v1", "Pod", ctx.namespace, sandbox_builders.selector_string(ctx.resource))
    unavailable = observe.sandbox_unavailable(pods, EXIT_SANDBOX_UNAVAILABLE)
    if unavailable is not None:  # a configuration problem: replacing pods would not help
        message = f"{counts}; {unavailable}. {ISOLATION_HINT}"
        if serving:
            draft.condition("Progressing", True, "SandboxUnavailable", message)
        else:
            draft.condition("Ready", False, "SandboxUnavailable", message)
        return
    if not serving:
        draft.condition("Ready", False, "ReplicasNotReady", counts)
    await replace_stuck_sandboxes(ctx, pods)


def min_ready_replicas(spec) -> int:
    """Ready servers a pool needs to count as serving: ``spec.minReadyReplicas`` (default 1), at most replicas."""
    wanted = getattr(spec, "min_ready_replicas", None) or 1
    return max(1, min(int(wanted), spec.replicas))


async def replace_stuck_sandboxes(ctx: Context, pods: list[dict]) -> None:
    """Delete running sandbox pods unready past the grace period; the Deployment starts fresh ones."""
    grace_s = ctx.resource.spec.unready_replace_after_seconds
    if grace_s is None:
        return
    replaced = 0
    for pod in pods:
        since = observe.unready_since(pod)
        if since is None:
            continue
        unready_s = (ctx.now - since).total_seconds()
        if unready_s < grace_s:
            ctx.requeue(grace_s - unready_s)
            continue
        name = pod["metadata"]["name"]
        if await ctx.client.delete("v1", "Pod", ctx.namespace, name):
            replaced += 1
            await post_event(ctx.client, ctx.body, "SandboxReplaced",
                             f"pod {name} was unready for {unready_s:.0f}s (> {grace_s}s); deleted", "Warning")
    if replaced:
        ctx.draft.set(replacedPods=int(ctx.draft.new.get("replacedPods") or 0) + replaced)
