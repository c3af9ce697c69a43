"""``spec.after``: a run starts only once the runs it names have Succeeded.

Checked until the run has started (``status.startTime``); after that the gate is open for good,
so deleting or re-running a dependency never disturbs a running or finished run. A failed
dependency fails the run (``Failed/DependencyFailed``, terminal). While waiting, the run is
Pending with ``DependenciesReady=False`` naming what it waits for, and a change of any of
those runs re-triggers it (plus a slow poll as a safety net).
"""

from __future__ import annotations

from codekiln.operator.reconcile import lifecycle
from codekiln.operator.reconcile.context import Context
from codekiln.operator.resources import Resource
from codekiln.operator.status import find_condition
from codekiln.operator.validation import related_problems, validate_document
from codekiln.operator.version import GROUP_VERSION

POLL_WHILE_WAITING_S = 30.0


async def dependencies_ready(ctx: Context) -> bool:
    """True when the run may start (or already has); otherwise sets status and returns False."""
    after, draft = ctx.resource.spec.after, ctx.draft
    ctx.memory.waits_on = frozenset()
    if not after or draft.new.get("startTime"):
        return True
    waiting: list[str] = []
    found: dict[tuple[str, str], Resource] = {}
    for dep in after:
        obj = await ctx.lookup(GROUP_VERSION, dep.kind, dep.name)
        parsed = validate_document(obj).resource if obj else None
        if parsed is not None:
            found[(dep.kind, dep.name)] = parsed
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        if phase == "Succeeded":
            continue
        if phase == "Failed":
            failed = find_condition(status, "Failed") or {}
            detail = failed.get("message") or status.get("message")
            message = f"{dep.kind} {dep.name!r} (spec.after) failed: {failed.get('reason', 'Failed')}"
            message += f": {detail}" if detail else ""
            draft.condition("DependenciesReady", False, "DependencyFailed", message)
            lifecycle.finish(ctx, False, "DependencyFailed", message)
            return False
        waiting.append(f"{dep.kind} {dep.name!r} ({'not found' if obj is None else phase or 'Pending'})")
        ctx.memory.waits_on |= {(dep.kind, dep.name)}
    problems = related_problems(ctx.resource, found)
    if problems:  # e.g. a seqLen the pipeline's packing cannot serve: say so instead of crashing the pods
        draft.set(phase="Pending")
        draft.condition("DependenciesReady", False, "IncompatibleDependency", "; ".join(problems))
        ctx.memory.waits_on |= frozenset(found)
        return False
    if waiting:
        draft.set(phase="Pending")
        draft.condition("DependenciesReady", False, "WaitingForDependencies", "waiting for " + ", ".join(waiting))
        ctx.requeue(POLL_WHILE_WAITING_S)
        return False
    draft.condition("DependenciesReady", True, "DependenciesSucceeded",
                    "every run in spec.after has Succeeded: " + ", ".join(f"{d.kind} {d.name!r}" for d in after))
    return True
