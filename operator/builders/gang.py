"""Gang children of PretrainRun and RLRun: an Indexed Job (one pod per node), a headless Service, a PodGroup.

The whole gang is one Job, created at once (no master-first ordering, so no deadlock), with
``backoffLimit: 0``: any failed pod fails the attempt and the reconciler recreates the whole
gang as a new Job ``<name>-r<attempt>`` that resumes from the latest checkpoint.
"""

from __future__ import annotations

from typing import Any

from codekiln.operator.builders import common, names
from codekiln.operator.resources import PretrainRun, RLRun
from codekiln.workloads import contract

GangResource = PretrainRun | RLRun
WORKLOAD_MODULES = {"PretrainRun": "codekiln.workloads.train", "RLRun": "codekiln.workloads.rl"}
SANDBOX_URL_ENV = contract.ENV_SANDBOX_URL
ATTEMPT_ENV = contract.ENV_ATTEMPT


def nproc_per_node(resource: GangResource) -> int:
    return resource.spec.nproc_per_node


def master_addr(resource: GangResource, attempt: int) -> str:
    """Rank 0's stable DNS name: ``<job>-0.<headless service>``."""
    job = names.gang_job_name(resource.metadata.name, attempt)
    return f"{job}-0.{names.gang_service_name(resource.metadata.name)}"


def torchrun_env(resource: GangResource, attempt: int) -> list[dict[str, Any]]:
    """The rendezvous env torchrun and torch.distributed expect (reserved: users cannot set these)."""
    rank_from_index = {"fieldRef": {"fieldPath": f"metadata.annotations['{names.COMPLETION_INDEX_ANNOTATION}']"}}
    addr, port = master_addr(resource, attempt), str(resource.spec.master_port)
    return [
        {"name": "PET_NNODES", "value": str(resource.spec.nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(nproc_per_node(resource))},
        {"name": "PET_NODE_RANK", "valueFrom": rank_from_index},
        {"name": "PET_MASTER_ADDR", "value": addr},
        {"name": "PET_MASTER_PORT", "value": port},
        {"name": "MASTER_ADDR", "value": addr},
        {"name": "MASTER_PORT", "value": port},
        {"name": "WORLD_SIZE", "value": str(resource.spec.nodes)},
        {"name": "RANK", "valueFrom": rank_from_index},
    ]


def pod_group_name(resource: GangResource, attempt: int) -> str:
    return names.gang_job_name(resource.metadata.name, attempt)


def build_gang_job(
    resource: GangResource,
    attempt: int,
    *,
    sandbox_url: str | None = None,
    suspend: bool = False,
    active_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """The Indexed Job of gang attempt ``attempt``: completions = parallelism = nodes, backoffLimit 0."""
    name = resource.metadata.name
    job_name = names.gang_job_name(name, attempt)
    attempt_labels = {names.LABEL_ATTEMPT: str(attempt)}
    env = [
        *common.base_env(resource),
        *torchrun_env(resource, attempt),
        {"name": ATTEMPT_ENV, "value": str(attempt)},
        *common.progress_env(resource),
    ]
    if sandbox_url:
        env.append({"name": SANDBOX_URL_ENV, "value": sandbox_url})
    shm = ({"name": "dshm", "emptyDir": {"medium": "Memory"}}, {"name": "dshm", "mountPath": "/dev/shm"})
    pod_spec = common.workload_pod_spec(
        resource,
        command=["torchrun", "-m", WORKLOAD_MODULES[resource.kind_name], "--config",
                 f"{names.CONFIG_MOUNT}/{names.CONFIG_KEY}"],
        env=env,
        extra_volumes=[shm],
        service_account=common.pod_service_account(resource),
    )
    pod_spec["subdomain"] = names.gang_service_name(name)
    pod_spec["containers"][0]["ports"].append(
        {"name": "rendezvous", "containerPort": resource.spec.master_port, "protocol": "TCP"}
    )
    pod_annotations: dict[str, str] = {}
    if resource.spec.scheduling.gang_scheduling:
        pod_annotations[names.VOLCANO_GROUP_ANNOTATION] = pod_group_name(resource, attempt)
    template_meta: dict[str, Any] = {
        "labels": {**names.owner_labels(resource.kind_name, name), names.LABEL_COMPONENT: "worker", **attempt_labels}
    }
    if pod_annotations:
        template_meta["annotations"] = pod_annotations
    common.finish_pod_template(resource, "trainer", template_meta, pod_spec)
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": resource.spec.nodes,
        "parallelism": resource.spec.nodes,
        "backoffLimit": 0,
        "suspend": bool(suspend or resource.spec.scheduling.queue_name),
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    return common.wrap_job(
        resource, job_name, component="gang", labels=attempt_labels, spec=spec,
        active_deadline_seconds=active_deadline_seconds,
    )


def build_gang_service(resource: GangResource) -> dict[str, Any]:
    """Headless Service (publishNotReadyAddresses) so ranks resolve each other before readiness."""
    name = resource.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.child_metadata(resource, names.gang_service_name(name), component="gang"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {**names.owner_labels(resource.kind_name, name), names.LABEL_COMPONENT: "worker"},
            "ports": [{"name": "rendezvous", "port": resource.spec.master_port,
                       "targetPort": resource.spec.master_port, "protocol": "TCP"}],
        },
    }


def build_pod_group(resource: GangResource, attempt: int) -> dict[str, Any]:
    """Volcano PodGroup: the scheduler binds all ``nodes`` pods or none."""
    spec: dict[str, Any] = {"minMember": resource.spec.nodes}
    if resource.spec.scheduling.priority_class_name:
        spec["priorityClassName"] = resource.spec.scheduling.priority_class_name
    return {
        "apiVersion": "scheduling.volcano.sh/v1beta1",
        "kind": "PodGroup",
        "metadata": common.child_metadata(resource, pod_group_name(resource, attempt), component="gang"),
        "spec": spec,
    }
