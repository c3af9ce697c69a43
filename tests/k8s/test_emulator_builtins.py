"""Builtin kinds: the API server's defaults, validation rules and immutable fields."""

import pytest
from k8s_emulator.client import ApiError, KubeClient
from sample_crds import deployment, job, pod_spec


def _reject(call, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as err:
        call(*args, **kwargs)
    assert err.value.status == 422, err.value.body
    return err.value.body["message"]


def test_job_defaults_selector_and_labels(k8s_client: KubeClient) -> None:
    created = k8s_client.create(job("train"), "default")
    spec, uid = created["spec"], created["metadata"]["uid"]
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "train" and labels["controller-uid"] == uid
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"],
            spec["suspend"]) == (1, 1, 6, "NonIndexed", False)
    indexed = k8s_client.create(job("shards", completions=4, parallelism=2, completionMode="Indexed",
                                    backoffLimitPerIndex=1), "default")
    assert indexed["spec"]["backoffLimit"] == 2147483647


@pytest.mark.parametrize(("spec", "field"), [
    ({"template": {"spec": pod_spec("Always")}}, "spec.template.spec.restartPolicy"),
    ({"backoffLimitPerIndex": 1, "completions": 2}, "spec.backoffLimitPerIndex"),
    ({"completionMode": "Indexed", "parallelism": 2}, "spec.completions"),
    ({"parallelism": -1}, "spec.parallelism"),
    ({"template": {"spec": {"restartPolicy": "Never", "containers": []}}}, "spec.template.spec.containers"),
    ({"podFailurePolicy": {"rules": []}, "template": {"spec": pod_spec("OnFailure")}}, "spec.podFailurePolicy"),
])
def test_invalid_jobs_are_rejected(k8s_client: KubeClient, spec: dict, field: str) -> None:
    assert field in _reject(k8s_client.create, {**job("bad"), "spec": {**job("bad")["spec"], **spec}}, "default")


def test_job_names_must_fit_in_a_label(k8s_client: KubeClient) -> None:
    assert "63 characters" in _reject(k8s_client.create, job("j" * 64), "default")


def test_job_template_is_immutable_but_suspend_and_parallelism_are_not(k8s_client: KubeClient) -> None:
    k8s_client.create(job("j", completions=4, parallelism=2, completionMode="Indexed"), "default")
    assert k8s_client.patch("batch/v1", "Job", "j", {"spec": {"suspend": True}}, "default")["spec"]["suspend"]
    assert k8s_client.patch("batch/v1", "Job", "j", {"spec": {"parallelism": 4}}, "default")["spec"]["parallelism"] == 4
    change = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "other:2"}]}}}}
    assert "spec.template: Invalid value: field is immutable" in _reject(
        k8s_client.patch, "batch/v1", "Job", "j", change, "default")
    assert "spec.completionMode" in _reject(
        k8s_client.patch, "batch/v1", "Job", "j", {"spec": {"completionMode": "NonIndexed"}}, "default")


def test_a_suspended_unstarted_job_may_change_scheduling_directives(k8s_client: KubeClient) -> None:
    k8s_client.create(job("queued", suspend=True), "default")
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"pool": "gpu"}}, "metadata": {"labels": {"q": "a"}}}}}
    patched = k8s_client.patch("batch/v1", "Job", "queued", patch, "default")
    assert patched["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    k8s_client.patch_status("batch/v1", "Job", "queued", {"startTime": "2026-01-01T00:00:00Z"}, "default")
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"pool": "cpu"}}}}}
    _reject(k8s_client.patch, "batch/v1", "Job", "queued", patch, "default")


def test_pods_start_pending_and_only_images_change(k8s_client: KubeClient) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec()}
    created = k8s_client.create(pod, "default")
    assert created["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert created["spec"]["schedulerName"] == "default-scheduler"
    assert created["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    image = {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}}
    assert k8s_client.patch("v1", "Pod", "p", image, "default", patch_type="strategic")["spec"]["containers"][0][
        "image"] == "busybox:1.37"
    command = {"spec": {"containers": [{"name": "main", "command": ["sh"]}]}}
    assert "pod updates may not change" in _reject(k8s_client.patch, "v1", "Pod", "p", command, "default",
                                                   patch_type="strategic")


def test_deployment_selector_must_match_and_is_immutable(k8s_client: KubeClient) -> None:
    bad = deployment("d")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert "does not match template" in _reject(k8s_client.create, bad, "default")
    created = k8s_client.create(deployment("d"), "default")
    assert created["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert "spec.selector" in _reject(k8s_client.patch, "apps/v1", "Deployment", "d",
                                      {"spec": {"selector": {"matchLabels": {"app": "d", "x": "y"}}}}, "default")


def test_services_get_a_cluster_ip_that_never_changes(k8s_client: KubeClient) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "s"}, "ports": [{"port": 80}]}}
    created = k8s_client.create(svc, "default")
    ip = created["spec"]["clusterIP"]
    assert ip.startswith("10.9") and created["spec"]["clusterIPs"] == [ip]
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    same = k8s_client.patch("v1", "Service", "s", {"spec": svc["spec"]}, "default")  # re-apply the desired spec
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # defaults kept: no-op
    assert "spec.clusterIP" in _reject(k8s_client.patch, "v1", "Service", "s", {"spec": {"clusterIP": "10.0.0.9"}},
                                       "default")
    headless = k8s_client.create({**svc, "metadata": {"name": "h"}, "spec": {**svc["spec"], "clusterIP": "None"}},
                                 "default")
    assert headless["spec"]["clusterIP"] == "None"
    two = {**svc, "metadata": {"name": "t"}, "spec": {"ports": [{"port": 1}, {"port": 2}]}}
    assert "port names" in _reject(k8s_client.create, two, "default")


def test_network_policy_types_default_like_the_api_server(k8s_client: KubeClient) -> None:
    base = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    only_empty_egress = {**base, "metadata": {"name": "a"}, "spec": {"podSelector": {}, "egress": []}}
    assert k8s_client.create(only_empty_egress, "default")["spec"]["policyTypes"] == ["Ingress"]  # egress NOT denied
    explicit = {**base, "metadata": {"name": "b"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert k8s_client.create(explicit, "default")["spec"]["policyTypes"] == ["Egress"]


def test_immutable_config_maps_and_role_binding_refs(k8s_client: KubeClient) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": True}
    k8s_client.create(cm, "default")
    assert "immutable" in _reject(k8s_client.patch, "v1", "ConfigMap", "c", {"data": {"a": "2"}}, "default")
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"},
               "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]}
    k8s_client.create(binding, "default")
    assert "roleRef" in _reject(k8s_client.patch, "rbac.authorization.k8s.io/v1", "RoleBinding", "rb",
                                {"roleRef": {"name": "r2"}}, "default")
    subjects = {"subjects": [{"kind": "ServiceAccount", "name": "other", "namespace": "default"}]}
    assert k8s_client.patch("rbac.authorization.k8s.io/v1", "RoleBinding", "rb", subjects, "default")["subjects"] \
        == subjects["subjects"]
