"""Which children each kind owns: the static set (created on first reconcile) and the full rendering."""

from __future__ import annotations

from typing import Any

from codekiln.operator.builders import common, data, gang, sandbox
from codekiln.operator.resources import DataPipeline, Resource, SandboxPool


def desired_children(resource: Resource) -> list[dict[str, Any]]:
    """Children that exist for the whole life of the resource (not the per-stage / per-attempt Jobs).

    No ConfigMap: pods read ``resource.json`` from their own template's annotation (downward API).
    """
    if isinstance(resource, SandboxPool):
        return [
            sandbox.build_sandbox_network_policy(resource),
            sandbox.build_sandbox_service(resource),
            sandbox.build_sandbox_deployment(resource),
        ]
    if isinstance(resource, DataPipeline):
        return []
    named = resource.spec.service_account_name or common.override_service_account(resource)
    identity = [] if named else [common.build_service_account(resource)]
    return [
        *identity,
        common.build_progress_role(resource),
        common.build_progress_role_binding(resource),
        gang.build_gang_service(resource),
    ]


def render_all(resource: Resource, *, sandbox_url: str | None = None) -> list[dict[str, Any]]:
    """Every manifest the operator may create for ``resource`` (first gang attempt, every stage)."""
    out = desired_children(resource)
    if isinstance(resource, DataPipeline):
        out += [data.build_stage_job(resource, i) for i in range(len(resource.spec.pipeline.plan()))]
    elif not isinstance(resource, SandboxPool):
        if resource.spec.scheduling.gang_scheduling:
            out.append(gang.build_pod_group(resource, 0))
        out.append(gang.build_gang_job(resource, 0, sandbox_url=sandbox_url))
    return out
