"""spec.podTemplateOverrides: Secrets/ConfigMaps as env, volumes, scheduling, security — validated and rendered."""

from __future__ import annotations

import copy

import pytest
from operator_factories import document, resource

from codekiln.operator.builders.children import desired_children, render_all
from codekiln.operator.validation import validate_document

FULL_OVERRIDE = {
    "metadata": {"labels": {"team": "code"}, "annotations": {"sidecar.istio.io/inject": "false"}},
    "spec": {
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PLAIN", "value": "1"}],
        "envFrom": [{"secretRef": {"name": "s3-credentials"}}, {"configMapRef": {"name": "settings"},
                                                                "prefix": "APP_"}],
        "volumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}},
                    {"name": "creds", "secret": {"secretName": "gcs", "defaultMode": 0o400}}],
        "volumeMounts": [{"name": "datasets", "mountPath": "/datasets", "readOnly": True},
                         {"name": "creds", "mountPath": "/var/run/creds"}],
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "priorityClassName": "training-high",
        "serviceAccountName": "trainer-sa",
        "securityContext": {"fsGroup": 2000, "supplementalGroups": [3000]},
        "containerSecurityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    },
}
SANDBOX_OVERRIDE = {
    "targets": ["sandbox"],
    "metadata": {"labels": {"team": "code"}},
    "spec": {"imagePullSecrets": [{"name": "registry"}], "tolerations": [{"key": "sandbox", "operator": "Exists"}],
             "nodeSelector": {"pool": "sandbox"}, "priorityClassName": "sandbox"},
}


def _pod(manifests, kind):
    obj = next(m for m in manifests if m["kind"] == kind)
    return obj["spec"]["template"]


@pytest.mark.parametrize("kind", ["DataPipeline", "PretrainRun", "RLRun"])
def test_override_reaches_the_workload_pod(kind):
    template = _pod(render_all(resource(kind, "ov", podTemplateOverrides=[FULL_OVERRIDE])), "Job")
    pod, container = template["spec"], template["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["PLAIN"]["value"] == "1" and "PYTHONUNBUFFERED" in env  # codekiln's env kept
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}},
                                    {"prefix": "APP_", "configMapRef": {"name": "settings"}}]
    assert {"name": "datasets", "mountPath": "/datasets", "readOnly": True} in container["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} >= {"codekiln-config", "datasets", "creds"}
    assert pod["imagePullSecrets"] == [{"name": "registry"}] and pod["priorityClassName"] == "training-high"
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"][0]["key"] == "gpu"
    assert pod["affinity"]["nodeAffinity"] and pod["serviceAccountName"] == "trainer-sa"
    assert "automountServiceAccountToken" not in pod  # shards default to no token; a named identity gets one
    assert pod["securityContext"]["fsGroup"] == 2000  # the user's fsGroup wins over the storage default
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert template["metadata"]["labels"]["team"] == "code"
    assert template["metadata"]["labels"]["codekiln.dev/name"] == "ov"  # selector labels untouched
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


def test_trainer_service_account_from_an_override_is_bound_and_not_created():
    run = resource("PretrainRun", "ov", podTemplateOverrides=[FULL_OVERRIDE])
    children = desired_children(run)
    assert not [c for c in children if c["kind"] == "ServiceAccount"]
    binding = next(c for c in children if c["kind"] == "RoleBinding")
    assert binding["subjects"][0]["name"] == "trainer-sa"  # progress reports still allowed


def test_storage_gets_a_safe_fsgroup_by_default():
    template = _pod(render_all(resource("PretrainRun", "st", storage={"claimName": "ckpt"})), "Job")
    assert template["spec"]["securityContext"] == {"fsGroup": 10001, "fsGroupChangePolicy": "OnRootMismatch"}
    plain = _pod(render_all(resource("PretrainRun", "plain")), "Job")
    assert "securityContext" not in plain["spec"]


def test_sandbox_override_keeps_isolation():
    template = _pod(render_all(resource("SandboxPool", "sb", podTemplateOverrides=[SANDBOX_OVERRIDE])), "Deployment")
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert pod["imagePullSecrets"] == [{"name": "registry"}] and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert template["metadata"]["labels"]["team"] == "code"


def _errors(kind, override, **spec):
    result = validate_document(document(kind, "x", podTemplateOverrides=[override], **spec))
    return result.errors


@pytest.mark.parametrize(("override", "field", "words"), [
    ({"spec": {"env": [{"name": "MASTER_ADDR", "value": "x"}]}}, "podTemplateOverrides[0].spec.env[0].name",
     "reserved"),
    ({"spec": {"env": [{"name": "CODEKILN_RESOURCE_NAME", "value": "x"}]}}, "spec.env[0].name", "reserved"),
    ({"spec": {"env": [{"name": "A", "valueFrom": {}}]}}, "spec.env[0].valueFrom", "exactly one"),
    ({"spec": {"envFrom": [{"prefix": "CODEKILN_", "secretRef": {"name": "s"}}]}}, "spec.envFrom[0]", "reserved"),
    ({"spec": {"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}}, "spec.volumeMounts[0].name",
     "no volume 'nope'"),
    ({"spec": {"volumes": [{"name": "codekiln-config", "emptyDir": {}}]}}, "spec.volumes[0]", "used by codekiln"),
    ({"spec": {"volumes": [{"name": "v"}]}}, "spec.volumes[0]", "exactly one volume source"),
    ({"spec": {"volumes": [{"name": "v", "emptyDir": {}}], "volumeMounts": [
        {"name": "v", "mountPath": "/etc/codekiln"}]}}, "spec.volumeMounts[0].mountPath", "used by codekiln"),
    ({"metadata": {"labels": {"codekiln.dev/name": "other"}}}, "metadata.labels", "selectors"),
    ({"targets": ["sandbox"]}, "podTemplateOverrides[0].targets[0]", "not a role of this kind"),
    ({"spec": {"nodeSelector": {"a": 1}, "unknownField": 1}}, "spec.unknownField", ""),
])
def test_invalid_overrides_name_the_field(override, field, words):
    errors = _errors("PretrainRun", override)
    assert any(field in line and words in line for line in errors), errors


@pytest.mark.parametrize(("spec", "field"), [
    ({"containerSecurityContext": {"privileged": True}}, "containerSecurityContext.privileged"),
    ({"containerSecurityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
    ({"containerSecurityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}, "capabilities.add"),
    ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
    ({"securityContext": {"runAsUser": 0}}, "securityContext.runAsUser"),
    ({"securityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "seccompProfile.type"),
    ({"serviceAccountName": "api-access"}, "serviceAccountName"),
    ({"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}, "volumes[0].hostPath"),
])
def test_sandbox_isolation_needs_the_named_opt_in(spec, field):
    override = {"spec": spec}
    errors = _errors("SandboxPool", override)
    assert any(field in line and "allowUnsafeSandboxSettings: true" in line for line in errors), errors
    allowed = copy.deepcopy(override)
    allowed["allowUnsafeSandboxSettings"] = True
    assert _errors("SandboxPool", allowed) == []
    assert _errors("PretrainRun", override) == []  # trainers may (their own pods, not untrusted code)
