"""DataPipeline children: one Indexed Job per expanded stage (completions = shards).

The stages are ``spec.pipeline.plan()`` (``workloads.data.config.expand_stages``): a stage's
``dedup`` block becomes its hash → bucket → cluster → filter stages, the same list a local run runs.
"""

from __future__ import annotations

from typing import Any

from codekiln.operator.builders import common, names
from codekiln.operator.resources import DataPipeline
from codekiln.workloads import contract

# Exit code a data shard uses for "bad input, retrying cannot help" (argparse and config errors).
NON_RETRIABLE_EXIT_CODE = contract.NON_RETRIABLE_EXIT_CODE


def stage_job_names(resource: DataPipeline) -> list[str]:
    return [
        names.stage_job_name(resource.metadata.name, index, stage.name)
        for index, stage in enumerate(resource.spec.pipeline.plan())
    ]


def build_stage_job(
    resource: DataPipeline, index: int, *, suspend: bool = False, active_deadline_seconds: int | None = None
) -> dict[str, Any]:
    """The Indexed Job of stage ``index``.

    Each shard is one completion index; a failed shard is retried on its own up to
    ``backoffLimitPerIndex`` times (the rest of the stage keeps going), a shard that exits
    with code 2 fails its index at once, and pod disruptions (preemption, drain) do not count.
    """
    stage = resource.spec.pipeline.plan()[index]
    name = resource.metadata.name
    job_name = names.stage_job_name(name, index, stage.name)
    stage_labels = {names.LABEL_STAGE: stage.name}
    pod_spec = common.workload_pod_spec(
        resource,
        command=["python", "-m", "codekiln.workloads.data", "--config",
                 f"{names.CONFIG_MOUNT}/{names.CONFIG_KEY}", "--stage", stage.name],
        env=[*common.base_env(resource), {"name": contract.ENV_STAGE, "value": stage.name}],
        service_account=resource.spec.service_account_name,
    )
    template_meta: dict[str, Any] = {"labels": {
        **names.owner_labels(resource.kind_name, name), names.LABEL_COMPONENT: "shard", **stage_labels}}
    common.finish_pod_template(resource, "dataShard", template_meta, pod_spec)
    parallelism = min(resource.spec.parallelism or stage.shards, stage.shards)
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": stage.shards,
        "parallelism": parallelism,
        "backoffLimitPerIndex": resource.spec.backoff_limit_per_index,
        "podFailurePolicy": {"rules": [
            {"action": "FailIndex", "onExitCodes": {
                "containerName": names.WORKLOAD_CONTAINER, "operator": "In", "values": [NON_RETRIABLE_EXIT_CODE]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "suspend": bool(suspend or resource.spec.scheduling.queue_name),
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    return common.wrap_job(
        resource, job_name, component="stage", labels=stage_labels, spec=spec,
        active_deadline_seconds=active_deadline_seconds,
    )
