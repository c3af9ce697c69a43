"""PretrainRun and RLRun: keep one gang attempt alive, recreate the whole gang on any pod failure.

Attempt ``k`` is the Job ``<name>-r<k>`` with ``k = status.restarts + status.disruptions``. On
a failure the new count is written to status *before* the old Job is deleted and the next one
created, so an operator crash in between neither loses nor double-counts a restart, and the
Job names make a duplicate gang impossible. A gang broken by a disruption (preemption,
eviction, drain: the pod's ``DisruptionTarget`` condition) is recreated too, but counted in
``status.disruptions``, not against ``maxRestarts``.
"""

from __future__ import annotations

from codekiln.operator.builders import gang as gang_builders
from codekiln.operator.builders import names
from codekiln.operator.builders.children import desired_children
from codekiln.operator.builders.data import NON_RETRIABLE_EXIT_CODE
from codekiln.operator.reconcile import lifecycle, observe
from codekiln.operator.reconcile.context import Context
from codekiln.operator.reconcile.dependencies import dependencies_ready
from codekiln.operator.reconcile.pool_ref import resolve_sandbox
from codekiln.operator.status import now_iso, write_status

POLL_WHILE_RUNNING_S = 30.0


async def reconcile_gang(ctx: Context) -> None:
    """One pass over a PretrainRun or RLRun."""
    draft, spec = ctx.draft, ctx.resource.spec
    if lifecycle.is_terminal(draft.new):
        await lifecycle.reconcile_terminal(ctx)
        return
    if not await dependencies_ready(ctx):
        return
    draft.set(restarts=int(draft.new.get("restarts") or 0), disruptions=int(draft.new.get("disruptions") or 0))
    attempt = draft.new["restarts"] + draft.new["disruptions"]
    job_name = names.gang_job_name(ctx.name, attempt)
    # Never started: no Job to look up (if a crash lost the startTime write, creating it answers 409 and
    # ``ensure`` adopts the existing Job).
    job = await ctx.child("batch/v1", "Job", job_name) if draft.new.get("startTime") else None

    remaining = lifecycle.deadline_remaining(ctx)
    if remaining is not None and remaining <= 0 and not spec.suspend:
        await _stop_attempt(ctx, job)
        lifecycle.finish(ctx, False, "DeadlineExceeded",
                         f"activeDeadlineSeconds ({spec.active_deadline_seconds}s) exceeded")
        return
    if remaining is not None:
        ctx.requeue(remaining)

    sandbox_url = None
    if ctx.kind == "RLRun":
        ready, sandbox_url = await resolve_sandbox(ctx)
        if not ready and job is None:
            draft.set(phase="Suspended" if spec.suspend else "Pending")
            return

    if spec.suspend:
        await _suspend(ctx, job)
        return
    await _resume_if_suspended(ctx, job)

    if ctx.memory.ensured_generation != ctx.generation:
        await ctx.ensure_all(desired_children(ctx.resource), update=True)
        ctx.memory.ensured_generation = ctx.generation

    if job is None:
        await _start_attempt(ctx, attempt, sandbox_url)
        return
    await _observe_attempt(ctx, job, attempt, sandbox_url)


async def _start_attempt(ctx: Context, attempt: int, sandbox_url: str | None) -> None:
    draft, spec = ctx.draft, ctx.resource.spec
    if attempt > 0:
        await _delete_stale_attempts(ctx, attempt)
    if not draft.new.get("startTime"):
        draft.set(startTime=now_iso(ctx.now))
    if spec.scheduling.gang_scheduling:
        await ctx.ensure(gang_builders.build_pod_group(ctx.resource, attempt))
    job = gang_builders.build_gang_job(ctx.resource, attempt, sandbox_url=sandbox_url,
                                       active_deadline_seconds=lifecycle.job_deadline(ctx))
    await ctx.ensure(job)
    if sandbox_url:
        draft.set(sandboxUrl=sandbox_url)
    message = f"gang Job {job['metadata']['name']} created: {spec.nodes} pod(s), attempt {attempt}"
    if draft.phase != "Restarting":
        draft.set(phase="Pending")
    draft.condition("Created", True, "GangCreated", message)
    ctx.requeue(POLL_WHILE_RUNNING_S)


async def _observe_attempt(ctx: Context, job: dict, attempt: int, sandbox_url: str | None) -> None:
    draft, spec = ctx.draft, ctx.resource.spec
    draft.set(**observe.job_counts(job))
    outcome = observe.job_finished(job)
    if outcome == "Complete":
        lifecycle.finish(ctx, True, "GangSucceeded", f"all {spec.nodes} pod(s) of {job['metadata']['name']} "
                         "completed")
        return
    pods = await ctx.owned("v1", "Pod", {names.LABEL_ATTEMPT: str(attempt)}, check_owner=False)
    failure = observe.failed_pod(pods)
    if outcome == "Failed" and observe.job_failure_reason(job) == "DeadlineExceeded":
        lifecycle.finish(ctx, False, "DeadlineExceeded",
                         f"activeDeadlineSeconds ({spec.active_deadline_seconds}s) exceeded")
        return
    if failure is not None or outcome == "Failed":
        what = failure.describe() if failure else f"Job {job['metadata']['name']} failed " \
            f"({observe.job_failure_reason(job)})"
        await _handle_failure(ctx, job, attempt, what, failure, sandbox_url)
        return
    if observe.job_suspended(job):
        draft.set(phase="Pending")
        draft.condition("Running", False, "WaitingForAdmission",
                        "the gang Job is suspended (queued, e.g. by Kueue)")
        return
    running = observe.running_pods(pods)
    if running >= spec.nodes:
        draft.set(phase="Running")
        draft.condition("Running", True, "GangRunning", f"{running}/{spec.nodes} pod(s) running")
        draft.clear("Restarting", "GangRunning", f"attempt {attempt} is running")
    else:
        if draft.phase not in ("Restarting",):
            draft.set(phase="Pending")
        draft.condition("Running", False, "PodsStarting", f"{running}/{spec.nodes} pod(s) running")
    ctx.requeue(POLL_WHILE_RUNNING_S)


async def _handle_failure(ctx: Context, job: dict, attempt: int, what: str, failure: observe.PodFailure | None,
                          sandbox_url: str | None) -> None:
    draft, spec = ctx.draft, ctx.resource.spec
    if failure is not None and failure.disrupted:
        disruptions = int(draft.new["disruptions"]) + 1
        message = (f"{what}; recreating the whole gang from the latest checkpoint (disruption {disruptions}, "
                   "not counted against maxRestarts)")
        draft.set(disruptions=disruptions)
        await _restart_gang(ctx, job, attempt + 1, "GangDisrupted", message, "disruption", sandbox_url)
        return
    if failure is not None and failure.exit_code == NON_RETRIABLE_EXIT_CODE:
        await _stop_attempt(ctx, job)
        lifecycle.finish(ctx, False, "NonRetriableExitCode",
                         f"{what}: exit code {NON_RETRIABLE_EXIT_CODE} means bad configuration, not restarted")
        return
    used = int(draft.new["restarts"])
    if used >= spec.max_restarts:
        await _stop_attempt(ctx, job)
        lifecycle.finish(ctx, False, "MaxRestartsExceeded",
                         f"{what}; the gang was already restarted {used} time(s) (maxRestarts {spec.max_restarts})")
        return
    restarts = used + 1
    message = f"{what}; recreating the whole gang from the latest checkpoint (restart {restarts}/{spec.max_restarts})"
    draft.set(restarts=restarts)
    await _restart_gang(ctx, job, attempt + 1, "GangPodFailed", message, "failure", sandbox_url)


async def _restart_gang(ctx: Context, job: dict, next_attempt: int, reason: str, message: str, cause: str,
                        sandbox_url: str | None) -> None:
    """Persist the new counts, then delete the broken attempt and create the next one."""
    draft = ctx.draft
    draft.set(phase="Restarting", active=0)
    draft.condition("Restarting", True, reason, message)
    draft.condition("Running", False, reason, message)
    # Persist the counts first: a crash from here on resumes at attempt ``next_attempt``.
    await write_status(ctx.client, ctx.body, draft)
    ctx.restarted = cause
    await ctx.client.delete("batch/v1", "Job", ctx.namespace, job["metadata"]["name"])
    await _start_attempt(ctx, next_attempt, sandbox_url)


async def _stop_attempt(ctx: Context, job: dict | None) -> None:
    """Stop the remaining pods of a finished run but keep the Job (and failed pods' logs): suspend it."""
    if job is not None and observe.job_finished(job) is None and not observe.job_suspended(job):
        await ctx.client.patch("batch/v1", "Job", ctx.namespace, job["metadata"]["name"], {"spec": {"suspend": True}})


async def _suspend(ctx: Context, job: dict | None) -> None:
    if job is not None and not observe.job_suspended(job):
        await ctx.client.patch("batch/v1", "Job", ctx.namespace, job["metadata"]["name"], {"spec": {"suspend": True}})
    ctx.draft.set(phase="Suspended", active=0)
    ctx.draft.condition("Suspended", True, "Suspended", "spec.suspend is true: pods deleted, run paused")
    ctx.draft.clear("Running", "Suspended", "suspended")


async def _resume_if_suspended(ctx: Context, job: dict | None) -> None:
    draft = ctx.draft
    if draft.phase != "Suspended":
        return
    if job is not None and observe.job_suspended(job) and not ctx.resource.spec.scheduling.queue_name:
        await ctx.client.patch("batch/v1", "Job", ctx.namespace, job["metadata"]["name"],
                               {"spec": {"suspend": False}})
    draft.set(phase="Pending")
    if draft.new.get("startTime"):
        draft.set(startTime=now_iso(ctx.now))  # like a Job: the deadline clock restarts on resume
    draft.condition("Suspended", False, "Resumed", "spec.suspend is false: run resumed")


async def _delete_stale_attempts(ctx: Context, attempt: int) -> None:
    """Jobs of older attempts left by a crash between 'status written' and 'old Job deleted'."""
    for job in await ctx.owned("batch/v1", "Job"):
        labels = job["metadata"].get("labels") or {}
        if labels.get(names.LABEL_ATTEMPT) not in (None, str(attempt)):
            await ctx.client.delete("batch/v1", "Job", ctx.namespace, job["metadata"]["name"])

