"""DataPipeline: stages in order, one Indexed Job each; the next starts only after the previous succeeded.

Shard retries are the Job controller's (``backoffLimitPerIndex``); the operator reads the
Jobs' counts into ``status.stages`` (per stage and per shard) and ``status.progress``.
"""

from __future__ import annotations

from typing import Any

from codekiln.operator.builders import data as data_builders
from codekiln.operator.builders.children import desired_children
from codekiln.operator.reconcile import lifecycle, observe
from codekiln.operator.reconcile.context import Context
from codekiln.operator.reconcile.dependencies import dependencies_ready
from codekiln.operator.resources import StageStatus
from codekiln.operator.status import now_iso, parse_time

POLL_WHILE_RUNNING_S = 30.0
# StageStatus field -> Job status key: per-shard detail ("0-3,5"), copied when the model defines it.
SHARD_FIELDS = {"completed_indexes": "completedIndexes", "failed_indexes": "failedIndexes"}


async def reconcile_pipeline(ctx: Context) -> None:
    """One pass over a DataPipeline."""
    draft, spec = ctx.draft, ctx.resource.spec
    if lifecycle.is_terminal(draft.new):
        await lifecycle.reconcile_terminal(ctx)
        return
    if not await dependencies_ready(ctx):
        return
    jobs = {job["metadata"]["name"]: job for job in await ctx.owned("batch/v1", "Job")}
    job_names = data_builders.stage_job_names(ctx.resource)

    remaining = lifecycle.deadline_remaining(ctx)
    if remaining is not None and remaining <= 0 and not spec.suspend:
        for job in jobs.values():
            if observe.job_finished(job) is None:
                await ctx.client.patch("batch/v1", "Job", ctx.namespace, job["metadata"]["name"],
                                       {"spec": {"suspend": True}})
        _write_stages(ctx, jobs, job_names)
        lifecycle.finish(ctx, False, "DeadlineExceeded",
                         f"activeDeadlineSeconds ({spec.active_deadline_seconds}s) exceeded")
        return
    if remaining is not None:
        ctx.requeue(remaining)

    if ctx.memory.ensured_generation != ctx.generation:
        await ctx.ensure_all(desired_children(ctx.resource), update=True)
        ctx.memory.ensured_generation = ctx.generation

    current = next((i for i, name in enumerate(job_names)
                    if name not in jobs or observe.job_finished(jobs[name]) != "Complete"), None)
    if current is None:
        _write_stages(ctx, jobs, job_names)
        lifecycle.finish(ctx, True, "AllStagesSucceeded", f"{len(job_names)} stage(s) succeeded")
        return
    stage = spec.pipeline.plan()[current]
    job = jobs.get(job_names[current])
    if job is not None and observe.job_finished(job) == "Failed":
        _write_stages(ctx, jobs, job_names)
        failed = (job.get("status") or {}).get("failedIndexes") or "?"
        lifecycle.finish(ctx, False, "StageFailed",
                         f"stage {stage.name!r} failed ({observe.job_failure_reason(job)}; failed shards {failed} "
                         f"after {spec.backoff_limit_per_index} retries each)")
        return
    draft.set(currentStage=stage.name)
    if spec.suspend:
        if job is not None and not observe.job_suspended(job):
            await ctx.client.patch("batch/v1", "Job", ctx.namespace, job["metadata"]["name"],
                                   {"spec": {"suspend": True}})
        draft.set(phase="Suspended")
        draft.condition("Suspended", True, "Suspended", "spec.suspend is true: shards stopped")
        draft.clear("Running", "Suspended", "suspended")
        _write_stages(ctx, jobs, job_names)
        return
    if draft.phase == "Suspended":
        if job is not None and observe.job_suspended(job) and not spec.scheduling.queue_name:
            await ctx.client.patch("batch/v1", "Job", ctx.namespace, job["metadata"]["name"],
                                   {"spec": {"suspend": False}})
        draft.set(phase="Pending", startTime=now_iso(ctx.now))
        draft.condition("Suspended", False, "Resumed", "spec.suspend is false: pipeline resumed")
    if job is None:
        if not draft.new.get("startTime"):
            draft.set(startTime=now_iso(ctx.now))
        job = await ctx.ensure(data_builders.build_stage_job(
            ctx.resource, current, active_deadline_seconds=lifecycle.job_deadline(ctx)))
        jobs[job["metadata"]["name"]] = job
        draft.condition("Created", True, "StageStarted",
                        f"stage {current + 1}/{len(job_names)} {stage.name!r}: Job {job_names[current]} "
                        f"with {stage.shards} shard(s)")
    _write_stages(ctx, jobs, job_names)
    if observe.job_suspended(job):
        draft.set(phase="Pending")
        draft.condition("Running", False, "WaitingForAdmission", "the stage Job is suspended (queued, e.g. by Kueue)")
    else:
        draft.set(phase="Running")
        draft.condition("Running", True, "StageRunning", f"stage {stage.name!r} ({current + 1}/{len(job_names)})")
    ctx.requeue(POLL_WHILE_RUNNING_S)


def _write_stages(ctx: Context, jobs: dict[str, dict], job_names: list[str]) -> None:
    """status.stages (per stage: shards, succeeded/failed/active) and status.progress (shards done)."""
    old = {s.get("name"): s for s in ctx.draft.new.get("stages") or []}
    stages: list[dict[str, Any]] = []
    done = total = 0
    current = None
    for stage, job_name in zip(ctx.resource.spec.pipeline.plan(), job_names, strict=True):
        job = jobs.get(job_name)
        counts = observe.job_counts(job)
        entry: dict[str, Any] = {"name": stage.name, "shards": stage.shards, **counts}
        status = (job or {}).get("status") or {}
        if job is None:
            entry["phase"] = "Pending"
        else:
            outcome = observe.job_finished(job)
            entry["phase"] = {"Complete": "Succeeded", "Failed": "Failed"}.get(outcome or "", "Running")
            if observe.job_suspended(job) and outcome is None:
                entry["phase"] = "Suspended"
            entry["startTime"] = status.get("startTime") or (old.get(stage.name) or {}).get("startTime")
            if status.get("completionTime"):
                entry["completionTime"] = status["completionTime"]
            for field, key in SHARD_FIELDS.items():  # which shards, once the CRD has room for it
                if field in StageStatus.model_fields and status.get(key):
                    entry[key] = status[key]
            if entry["phase"] in ("Running", "Suspended") and current is None:
                current = stage.name
        stages.append({k: v for k, v in entry.items() if v is not None})
        done += min(counts["succeeded"], stage.shards)
        total += stage.shards
    ctx.draft.set(stages=stages, stagesTotal=len(stages),
                  stagesDone=sum(1 for entry in stages if entry["phase"] == "Succeeded"))
    progress = dict(ctx.draft.new.get("progress") or {})
    progress.update(step=done, totalSteps=total, percent=round(100.0 * done / total, 2))
    if current:
        progress["stage"] = current
    started = parse_time(ctx.draft.new.get("startTime"))
    elapsed = (ctx.now - started).total_seconds() if started else 0.0
    if done and elapsed > 0:
        rate = done / elapsed
        progress.update(throughput=round(rate, 4), throughputUnit="shards/s",
                        etaSeconds=round((total - done) / rate, 1))
    if progress != (ctx.draft.new.get("progress") or {}):
        progress["updatedAt"] = now_iso(ctx.now)
    ctx.draft.set(progress=progress)
