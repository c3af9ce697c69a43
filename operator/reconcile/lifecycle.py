"""Run-to-completion rules shared by DataPipeline, PretrainRun and RLRun.

Terminal phases are sticky: once Succeeded or Failed, a resource never gets children
again and its restart budget is never reset; only the TTL cleanup still runs.
"""

from __future__ import annotations

import math

from codekiln.operator.reconcile.children import delete_owned
from codekiln.operator.reconcile.context import Context
from codekiln.operator.status import TERMINAL_PHASES, find_condition, is_true, now_iso, parse_time

INVALID_SPEC = "InvalidSpec"


def is_terminal(status: dict | None) -> bool:
    """Finished for good (an InvalidSpec failure is not: fixing the spec lets the resource start)."""
    status = status or {}
    if status.get("phase") not in TERMINAL_PHASES:
        return False
    failed = find_condition(status, "Failed")
    return not (failed and failed.get("reason") == INVALID_SPEC)


def finish(ctx: Context, succeeded: bool, reason: str, message: str) -> None:
    """Move to a terminal phase with Complete/Failed set and Running cleared."""
    draft = ctx.draft
    draft.set(phase="Succeeded" if succeeded else "Failed", completionTime=now_iso(ctx.now), message=message)
    draft.condition("Complete" if succeeded else "Failed", True, reason, message)
    draft.clear("Running", reason, message)
    draft.clear("Restarting", reason, message)
    draft.clear("Suspended", reason, message)
    schedule_ttl(ctx)


def schedule_ttl(ctx: Context) -> None:
    ttl = ctx.resource.spec.ttl_seconds_after_finished
    if ttl is not None and not ctx.memory.cleaned_up:
        ctx.requeue(ttl)


async def reconcile_terminal(ctx: Context) -> None:
    """Terminal: nothing is (re)created; children are removed once the TTL has passed."""
    ttl = ctx.resource.spec.ttl_seconds_after_finished
    if ttl is None or ctx.memory.cleaned_up or is_true(ctx.draft.new, "ChildrenDeleted"):
        return
    finished = parse_time(ctx.draft.new.get("completionTime")) or ctx.now
    remaining = (finished - ctx.now).total_seconds() + ttl
    if remaining > 0:
        ctx.requeue(remaining)
        return
    await delete_owned(ctx.client, ctx.namespace, ctx.owner_selector, ctx.uid)
    ctx.memory.cleaned_up = True
    ctx.draft.condition("ChildrenDeleted", True, "TTLExpired",
                        f"children deleted {ttl}s after finishing (ttlSecondsAfterFinished)")


def deadline_remaining(ctx: Context) -> float | None:
    """Seconds left before ``activeDeadlineSeconds`` (counted from startTime, which resume resets)."""
    deadline = ctx.resource.spec.active_deadline_seconds
    started = parse_time(ctx.draft.new.get("startTime"))
    if deadline is None or started is None:
        return None
    return deadline - (ctx.now - started).total_seconds()


def job_deadline(ctx: Context) -> int | None:
    """The Job-level activeDeadlineSeconds (so pods stop on time even while the operator is down)."""
    remaining = deadline_remaining(ctx)
    return None if remaining is None else max(1, math.ceil(remaining))
