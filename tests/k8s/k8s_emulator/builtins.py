"""What the API server does to builtin kinds on write: defaulting, validation and immutable fields.

Only the kinds codekiln creates are covered (Job, Pod, Deployment, Service, NetworkPolicy, ConfigMap,
Secret, RoleBinding), with the rules an operator is most likely to trip over in a real cluster:
defaults that make a naive "desired == existing" comparison differ, fields the API server refuses to
change, and spec combinations it rejects.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from typing import Any

from kmock import resource

JOBS = resource("batch", "v1", "jobs")
PODS = resource("", "v1", "pods")
DEPLOYMENTS = resource("apps", "v1", "deployments")
SERVICES = resource("", "v1", "services")
NETWORK_POLICIES = resource("networking.k8s.io", "v1", "networkpolicies")
CONFIG_MAPS = resource("", "v1", "configmaps")
SECRETS = resource("", "v1", "secrets")
ROLE_BINDINGS = resource("rbac.authorization.k8s.io", "v1", "rolebindings")
MAX_INT32 = 2147483647
_SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")
_SCHEDULING_DIRECTIVES = ("nodeSelector", "tolerations", "affinity", "schedulingGates")


def _pod_spec_defaults(spec: dict[str, Any], restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _pod_spec_errors(spec: Any, field: str) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{field}: Required value"]
    containers = spec.get("containers")
    if not containers:
        return [f"{field}.containers: Required value"]
    errors = []
    names = [c.get("name") for c in containers]
    for i, container in enumerate(containers):
        if not container.get("name"):
            errors.append(f"{field}.containers[{i}].name: Required value")
        if not container.get("image"):
            errors.append(f"{field}.containers[{i}].image: Required value")
    if len(set(names)) != len(names):
        errors.append(f"{field}.containers: Duplicate value: container names must be unique")
    return errors


def _default_job(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec, md = obj.setdefault("spec", {}), obj["metadata"]
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("backoffLimit", MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6)
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    if not spec.get("manualSelector"):
        uid = md["uid"]
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": md["name"],
                       "controller-uid": uid, "job-name": md["name"]})
    _pod_spec_defaults(spec.setdefault("template", {}).setdefault("spec", {}), restart_policy="Never")


def _job_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    errors = _pod_spec_errors(pod, "spec.template.spec")
    if len(obj["metadata"]["name"]) > 63:
        errors.append("metadata.name: Invalid value: must be no more than 63 characters (it becomes a label)")
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        errors.append(f"spec.template.spec.restartPolicy: Unsupported value: {pod.get('restartPolicy')!r}: "
                      'supported values: "OnFailure", "Never"')
    indexed = spec.get("completionMode") == "Indexed"
    if indexed and spec.get("completions") is None:
        errors.append("spec.completions: Required value: when completion mode is Indexed")
    for name in ("backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(name) is not None and not indexed:
            errors.append(f"spec.{name}: Invalid value: requires indexed completion mode")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errors.append("spec.maxFailedIndexes: Invalid value: requires backoffLimitPerIndex")
    if spec.get("podFailurePolicy") and pod.get("restartPolicy") != "Never":
        errors.append("spec.podFailurePolicy: Invalid value: only allowed when restartPolicy is Never")
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < (1 if key == "activeDeadlineSeconds" else 0)):
            errors.append(f"spec.{key}: Invalid value: {value!r}: must be greater than or equal to 0")
    if old is None:
        return errors
    old_spec = old.get("spec") or {}
    for key in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "manualSelector"):
        if spec.get(key) != old_spec.get(key):
            errors.append(f"spec.{key}: Invalid value: field is immutable")
    elastic = indexed and spec.get("completions") == spec.get("parallelism")
    if spec.get("completions") != old_spec.get("completions") and not elastic:
        errors.append("spec.completions: Invalid value: field is immutable")
    if spec.get("template") != old_spec.get("template"):
        never_started = old_spec.get("suspend") and not (old.get("status") or {}).get("startTime")
        if not (never_started and _only_scheduling_changed(spec.get("template"), old_spec.get("template"))):
            errors.append("spec.template: Invalid value: field is immutable")
    return errors


def _only_scheduling_changed(new: Any, old: Any) -> bool:
    def strip(template: Any) -> Any:
        template = copy.deepcopy(template or {})
        template.get("metadata", {}).pop("labels", None)
        template.get("metadata", {}).pop("annotations", None)
        for key in _SCHEDULING_DIRECTIVES:
            template.get("spec", {}).pop(key, None)
        return template

    return strip(new) == strip(old)


def _default_pod(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    _pod_spec_defaults(obj.setdefault("spec", {}))
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj["spec"])}


def _qos_class(spec: dict[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(r.get("limits") and all(r.get("limits", {}).get(k) == v
                                             for k, v in (r.get("requests") or r.get("limits")).items())
                     and set(r["limits"]) >= {"cpu", "memory"} for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def _pod_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    errors = _pod_spec_errors(obj.get("spec"), "spec")
    if old is None:
        return errors

    def mutable_removed(spec: Any) -> Any:
        spec = copy.deepcopy(spec or {})
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                container.pop("image", None)
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            spec.pop(key, None)
        return spec

    if mutable_removed(obj.get("spec")) != mutable_removed(old.get("spec")):
        errors.append("spec: Forbidden: pod updates may not change fields other than spec.containers[*].image, "
                      "spec.initContainers[*].image, spec.activeDeadlineSeconds, spec.tolerations (only additions "
                      "to existing tolerations) or spec.terminationGracePeriodSeconds")
    return errors


def _default_deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxSurge": "25%", "maxUnavailable": "25%"})
    _pod_spec_defaults(spec.setdefault("template", {}).setdefault("spec", {}))


def _deployment_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    errors = _pod_spec_errors((spec.get("template") or {}).get("spec"), "spec.template.spec")
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        errors.append("spec.selector: Required value")
    elif not selector.items() <= labels.items():
        errors.append(f"spec.template.metadata.labels: Invalid value: {labels!r}: `selector` does not match "
                      "template `labels`")
    if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") not in (None, "Always"):
        errors.append('spec.template.spec.restartPolicy: Unsupported value: supported values: "Always"')
    if old is not None and spec.get("selector") != (old.get("spec") or {}).get("selector"):
        errors.append("spec.selector: Invalid value: field is immutable")
    return errors


def _default_service(obj: dict[str, Any], old: dict[str, Any] | None, allocate: Callable[[], str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if not spec.get("clusterIP"):
        previous = ((old or {}).get("spec") or {}).get("clusterIP")
        spec["clusterIP"] = previous or allocate()
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def _service_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    ports = spec.get("ports") or []
    errors = []
    if not ports and spec.get("clusterIP") != "None":
        errors.append("spec.ports: Required value")
    if len(ports) > 1 and not all(p.get("name") for p in ports):
        errors.append("spec.ports: Required value: port names are required when there is more than one port")
    if old is not None and spec.get("clusterIP") != (old.get("spec") or {}).get("clusterIP"):
        errors.append("spec.clusterIP: Invalid value: field is immutable")
    return errors


def _default_network_policy(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):  # the API server's default: Egress only when egress rules are present
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def _immutable_data_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    if old is None or not old.get("immutable"):
        return []
    if not obj.get("immutable"):
        return ["immutable: Forbidden: field is immutable when `immutable` is set"]
    if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
        return ["data: Forbidden: field is immutable when `immutable` is set"]
    return []


def _role_binding_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    if old is not None and obj.get("roleRef") != old.get("roleRef"):
        return ["roleRef: Invalid value: cannot change roleRef"]
    return [] if obj.get("roleRef") else ["roleRef: Required value"]


class Builtins:
    """Applies defaults and checks for builtin kinds; allocates Service cluster IPs."""

    def __init__(self) -> None:
        self._next_ip = 10

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return str(_SERVICE_RANGE.network_address + self._next_ip)

    def default(self, res: resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Fill the API server's defaults into ``obj`` in place (``old`` is the stored object on updates)."""
        if res == JOBS:
            _default_job(obj, old)
        elif res == PODS:
            _default_pod(obj, old)
        elif res == DEPLOYMENTS:
            _default_deployment(obj, old)
        elif res == SERVICES:
            _default_service(obj, old, self._allocate_ip)
        elif res == NETWORK_POLICIES:
            _default_network_policy(obj, old)

    def errors(self, res: resource, obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
        """Validation and immutability problems, in the API server's ``field: problem`` form."""
        checks = {JOBS: _job_errors, PODS: _pod_errors, DEPLOYMENTS: _deployment_errors, SERVICES: _service_errors,
                  CONFIG_MAPS: _immutable_data_errors, SECRETS: _immutable_data_errors,
                  ROLE_BINDINGS: _role_binding_errors}
        check = checks.get(res)
        return check(obj, old) if check else []
