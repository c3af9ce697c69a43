"""Pieces every builder shares: owner references, metadata, the config map, pod templates, RBAC."""

from __future__ import annotations

import json
from typing import Any

from codekiln.operator import pod_overrides
from codekiln.operator.builders import names
from codekiln.operator.resources import Resource
from codekiln.operator.version import GROUP_VERSION
from codekiln.workloads import contract
from codekiln.workloads.llm.config import secret_env_vars

# Env the workload's progress reporter reads (workloads/progress.py, in-cluster backend).
ENV_RESOURCE_KIND = contract.ENV_RESOURCE_KIND
ENV_RESOURCE_PLURAL = contract.ENV_RESOURCE_PLURAL
ENV_RESOURCE_NAME = contract.ENV_RESOURCE_NAME
ENV_RESOURCE_NAMESPACE = contract.ENV_RESOURCE_NAMESPACE
ENV_RESOURCE_API_VERSION = contract.ENV_RESOURCE_API_VERSION
ENV_PROGRESS_BACKEND = contract.ENV_PROGRESS_BACKEND
WORKLOAD_METRICS_PORT = contract.WORKLOAD_METRICS_PORT


def uid_of(resource: Resource) -> str:
    """The server-assigned uid (ownerReferences need it)."""
    uid = (resource.metadata.model_extra or {}).get("uid")
    if not uid:
        raise ValueError(f"{resource.kind_name} {resource.metadata.name}: metadata.uid is missing (not from a server?)")
    return str(uid)


def namespace_of(resource: Resource) -> str:
    return resource.metadata.namespace or "default"


def owner_reference(resource: Resource) -> dict[str, Any]:
    """A controller ownerReference: children are garbage-collected with the resource."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": resource.kind_name,
        "name": resource.metadata.name,
        "uid": uid_of(resource),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    resource: Resource,
    name: str,
    *,
    component: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Metadata of a child object: name, namespace, owner labels, controller ownerReference."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace_of(resource),
        "labels": {
            **names.owner_labels(resource.kind_name, resource.metadata.name),
            names.LABEL_COMPONENT: component,
            **(labels or {}),
        },
        "ownerReferences": [owner_reference(resource)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def resource_document(resource: Resource) -> dict[str, Any]:
    """The validated resource in wire form, exactly what pods read from /etc/codekiln/resource.json."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": resource.kind_name,
        "metadata": {"name": resource.metadata.name, "namespace": namespace_of(resource)},
        "spec": resource.spec.to_wire(),
    }


def build_config_map(resource: Resource) -> dict[str, Any]:
    """ConfigMap ``<name>-config`` holding ``resource.json`` (defaults filled in)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(resource, names.config_map_name(resource.metadata.name), component="config"),
        "data": {names.CONFIG_KEY: resource_json(resource)},
    }


def build_service_account(resource: Resource) -> dict[str, Any]:
    """The per-resource ServiceAccount workload pods run as (only when the spec names none)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(
            resource, names.workload_service_account(resource.metadata.name), component="workload-identity"
        ),
    }


def pod_service_account(resource: Resource) -> str:
    """The gang pods' ServiceAccount: a trainer override's, else spec.serviceAccountName, else ``<name>-workload``."""
    return override_service_account(resource) or resource.spec.service_account_name \
        or names.workload_service_account(resource.metadata.name)


def override_service_account(resource: Resource) -> str | None:
    """The ServiceAccount the last applicable ``podTemplateOverrides`` entry names, if any."""
    found = None
    for role in pod_overrides.ROLES.get(resource.kind_name, ()):
        for override in pod_overrides.applicable(resource.spec.pod_template_overrides, role):
            found = override.spec.service_account_name or found
    return found


def finish_pod_template(resource: Resource, role: str, template_meta: dict[str, Any],
                        pod_spec: dict[str, Any]) -> None:
    """Last touches of every workload pod template: fsGroup for mounted claims, then ``podTemplateOverrides``.

    Args:
        resource: the validated resource.
        role: trainer, dataShard or sandbox.
        template_meta: the pod template's metadata (in place).
        pod_spec: the pod spec (in place).
    """
    claims = resource.spec.storage is not None or any(
        "persistentVolumeClaim" in (volume.model_extra or {})
        for override in pod_overrides.applicable(resource.spec.pod_template_overrides, role)
        for volume in override.spec.volumes)
    if claims and role != "sandbox":
        pod_overrides.storage_security_context(pod_spec)
    pod_overrides.apply_overrides(resource.spec.pod_template_overrides, role, template_meta, pod_spec)
    document = resource_document(resource)
    if role == "sandbox":  # scaling (kubectl scale, an HPA) must not change the template and roll every server
        document["spec"].pop("replicas", None)
    template_meta["annotations"] = {**(template_meta.get("annotations") or {}),
                                    RESOURCE_ANNOTATION: json.dumps(document, indent=2, sort_keys=True)}


def build_progress_role(resource: Resource) -> dict[str, Any]:
    """Role allowing get/patch of exactly this resource's status subresource (progress reports)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(resource, names.progress_role_name(resource.metadata.name), component="progress"),
        "rules": [{
            "apiGroups": [GROUP_VERSION.split("/")[0]],
            "resources": [f"{resource.plural}/status"],
            "resourceNames": [resource.metadata.name],
            "verbs": ["get", "patch"],
        }],
    }


def build_progress_role_binding(resource: Resource) -> dict[str, Any]:
    """Binds the progress Role to the ServiceAccount the workload pods run as."""
    name = names.progress_role_name(resource.metadata.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(resource, name, component="progress"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{
            "kind": "ServiceAccount",
            "name": pod_service_account(resource),
            "namespace": namespace_of(resource),
        }],
    }


def progress_env(resource: Resource) -> list[dict[str, Any]]:
    """Env telling ``codekiln.workloads.progress`` which resource's status to patch."""
    return [
        {"name": ENV_PROGRESS_BACKEND, "value": "kubernetes"},
        {"name": ENV_RESOURCE_API_VERSION, "value": GROUP_VERSION},
        {"name": ENV_RESOURCE_KIND, "value": resource.kind_name},
        {"name": ENV_RESOURCE_PLURAL, "value": resource.plural},
        {"name": ENV_RESOURCE_NAME, "value": resource.metadata.name},
        {"name": ENV_RESOURCE_NAMESPACE, "value": namespace_of(resource)},
    ]


def user_env(resource: Resource) -> list[dict[str, Any]]:
    """``spec.env``, plus LLM API keys from Secrets named by ``apiKeySecretRef`` (as ``valueFrom.secretKeyRef``)."""
    env = [{"name": var.name, "value": var.value} for var in resource.spec.env]
    named = {e["name"] for e in env}
    spec = resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return env + [e for e in secret_env_vars(spec) if e["name"] not in named]


def compute_resources(resource: Resource) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wanted = resource.spec.container_resources  # resources (shards, sandboxes) or resourcesPerNode (gangs)
    if wanted.requests:
        out["requests"] = dict(wanted.requests)
    if wanted.limits:
        out["limits"] = dict(wanted.limits)
    return out


RESOURCE_ANNOTATION = f"{GROUP_VERSION.split('/')[0]}/resource"


def resource_json(resource: Resource) -> str:
    """``resource.json`` (defaults filled in): what the workload reads at /etc/codekiln/resource.json."""
    return json.dumps(resource_document(resource), indent=2, sort_keys=True)


def config_volume(resource: Resource) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount) of ``resource.json`` at /etc/codekiln: a downward-API file of the pod's own
    ``codekiln.dev/resource`` annotation (no ConfigMap to create, watch or keep in sync: a spec change reaches
    the next gang attempt, stage Job or sandbox rollout with the pod template itself)."""
    volume = {
        "name": "codekiln-config",
        "downwardAPI": {"defaultMode": 0o444, "items": [{
            "path": names.CONFIG_KEY,
            "fieldRef": {"fieldPath": f"metadata.annotations['{RESOURCE_ANNOTATION}']"},
        }]},
    }
    return volume, {"name": "codekiln-config", "mountPath": names.CONFIG_MOUNT, "readOnly": True}


def storage_volume(resource: Resource) -> tuple[dict[str, Any], dict[str, Any]] | None:
    storage = resource.spec.storage
    if storage is None:
        return None
    volume = {"name": "codekiln-storage", "persistentVolumeClaim": {"claimName": storage.claim_name}}
    return volume, {"name": "codekiln-storage", "mountPath": storage.mount_path}


def apply_scheduling(resource: Resource, pod_spec: dict[str, Any]) -> dict[str, Any]:
    """Copy nodeSelector, tolerations, priority class and scheduler name into ``pod_spec``."""
    scheduling = resource.spec.scheduling
    if scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in scheduling.tolerations]
    if scheduling.priority_class_name:
        pod_spec["priorityClassName"] = scheduling.priority_class_name
    if scheduling.scheduler_name:
        pod_spec["schedulerName"] = scheduling.scheduler_name
    elif scheduling.gang_scheduling:
        pod_spec["schedulerName"] = "volcano"
    return pod_spec


def workload_pod_spec(
    resource: Resource,
    *,
    command: list[str],
    env: list[dict[str, Any]],
    extra_volumes: list[tuple[dict[str, Any], dict[str, Any]]] = (),
    service_account: str | None = None,
) -> dict[str, Any]:
    """A run-to-completion pod spec: one ``workload`` container, config + storage mounted."""
    volumes_mounts = [config_volume(resource), *extra_volumes]
    storage = storage_volume(resource)
    if storage is not None:
        volumes_mounts.append(storage)
    container: dict[str, Any] = {
        "name": names.WORKLOAD_CONTAINER,
        "image": resource.spec.image,
        "imagePullPolicy": resource.spec.image_pull_policy,
        "command": command,
        "env": [*env, *user_env(resource)],
        "ports": [{"name": "metrics", "containerPort": WORKLOAD_METRICS_PORT, "protocol": "TCP"}],
        "volumeMounts": [mount for _, mount in volumes_mounts],
    }
    resources = compute_resources(resource)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [volume for volume, _ in volumes_mounts],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    else:
        pod_spec["automountServiceAccountToken"] = False
    return apply_scheduling(resource, pod_spec)


def base_env(resource: Resource) -> list[dict[str, Any]]:
    """Env every workload pod gets: unbuffered output and the metrics port."""
    return [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": contract.ENV_METRICS_PORT, "value": str(WORKLOAD_METRICS_PORT)},
    ]


def queue_labels(resource: Resource) -> dict[str, str]:
    """Kueue's queue label, when the spec names a LocalQueue."""
    queue = resource.spec.scheduling.queue_name
    return {names.KUEUE_QUEUE_LABEL: queue} if queue else {}


def wrap_job(
    resource: Resource,
    job_name: str,
    *,
    component: str,
    labels: dict[str, str],
    spec: dict[str, Any],
    active_deadline_seconds: float | None,
) -> dict[str, Any]:
    """A batch/v1 Job around ``spec``, labelled for its owner and Kueue, with an optional deadline."""
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = max(1, int(active_deadline_seconds))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            resource, job_name, component=component, labels={**labels, **queue_labels(resource)}
        ),
        "spec": spec,
    }
