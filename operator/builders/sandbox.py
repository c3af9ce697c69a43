"""SandboxPool children: a hardened Deployment of sandbox servers, its Service, a deny-egress NetworkPolicy."""

from __future__ import annotations

from typing import Any

from codekiln.operator.builders import common, names
from codekiln.operator.resources import SandboxPool

SANDBOX_UID = 65532  # "nonroot" in distroless-style images
TMP_SIZE_LIMIT = "1Gi"
TERMINATION_LOG = "/dev/termination-log"


def pool_selector(resource: SandboxPool) -> dict[str, str]:
    return {**names.owner_labels(resource.kind_name, resource.metadata.name), names.LABEL_COMPONENT: "sandbox"}


def selector_string(resource: SandboxPool) -> str:
    """``status.selector`` for the scale subresource (what an HPA counts)."""
    return names.label_selector(pool_selector(resource))


def seccomp_profile(resource: SandboxPool) -> dict[str, str]:
    """RuntimeDefault, or the Localhost profile the pool names (one that allows user namespaces)."""
    if resource.spec.seccomp_localhost_profile:
        return {"type": "Localhost", "localhostProfile": resource.spec.seccomp_localhost_profile}
    return {"type": "RuntimeDefault"}


def _container(resource: SandboxPool) -> dict[str, Any]:
    port = resource.spec.sandbox.port
    probe = {"httpGet": {"port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}
    volumes_mounts = [common.config_volume(resource)]
    container: dict[str, Any] = {
        "name": "sandbox",
        "image": resource.spec.image,
        "imagePullPolicy": resource.spec.image_pull_policy,
        "command": ["python", "-m", "codekiln.workloads.sandbox", "serve", "--config",
                    f"{names.CONFIG_MOUNT}/{names.CONFIG_KEY}", "--exit-on-self-check-failure",
                    "--termination-log", TERMINATION_LOG],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "TMPDIR", "value": "/tmp"},
                # Sessions are stateful: the server answers POST /sessions with its pod's own address
                # so clients send the session's later calls there, past the Service's load balancing.
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                *common.user_env(resource)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "http"}},
        "livenessProbe": {**probe, "httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": seccomp_profile(resource),
            **({"procMount": resource.spec.proc_mount} if resource.spec.proc_mount else {}),
        },
        "volumeMounts": [mount for _, mount in volumes_mounts] + [{"name": "tmp", "mountPath": "/tmp"}],
    }
    resources = common.compute_resources(resource)
    if resources:
        container["resources"] = resources
    return container


def build_sandbox_deployment(resource: SandboxPool) -> dict[str, Any]:
    """Deployment of ``spec.replicas`` sandbox servers; no service-account token, no privileges."""
    config_vol, _ = common.config_volume(resource)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "fsGroup": SANDBOX_UID,
            "seccompProfile": seccomp_profile(resource),
        },
        "containers": [_container(resource)],
        "volumes": [config_vol, {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE_LIMIT}}],
    }
    if resource.spec.service_account_name:
        pod_spec["serviceAccountName"] = resource.spec.service_account_name
    if resource.spec.runtime_class_name:
        pod_spec["runtimeClassName"] = resource.spec.runtime_class_name
    if resource.spec.host_users is not None:
        pod_spec["hostUsers"] = resource.spec.host_users
    common.apply_scheduling(resource, pod_spec)
    selector = pool_selector(resource)
    template_meta: dict[str, Any] = {"labels": dict(selector)}
    common.finish_pod_template(resource, "sandbox", template_meta, pod_spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.child_metadata(resource, resource.metadata.name, component="sandbox"),
        "spec": {
            "replicas": resource.spec.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def build_sandbox_service(resource: SandboxPool) -> dict[str, Any]:
    """ClusterIP Service: ``http://<pool>.<namespace>.svc:<port>``."""
    port = resource.spec.sandbox.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.child_metadata(
            resource, names.sandbox_service_name(resource.metadata.name), component="sandbox"
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": pool_selector(resource),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_sandbox_network_policy(resource: SandboxPool) -> dict[str, Any]:
    """Deny all egress from sandbox pods; ingress only from pods of the same namespace on the server port."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": common.child_metadata(
            resource, f"{resource.metadata.name}-deny-egress", component="sandbox"
        ),
        "spec": {
            "podSelector": {"matchLabels": pool_selector(resource)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [{"podSelector": {}}],
                "ports": [{"protocol": "TCP", "port": resource.spec.sandbox.port}],
            }],
            "egress": [],
        },
    }
