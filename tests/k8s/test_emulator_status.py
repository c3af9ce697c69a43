"""Status and scale subresources: isolation from the main endpoint, PUT/PATCH on /status and /scale."""

import pytest
from k8s_emulator.client import ApiError, KubeClient
from sample_crds import API_VERSION, deployment, job, pod_spec, widget, widget_crd


@pytest.fixture
def k8s_crds():
    return [widget_crd()]


def test_status_in_create_is_dropped_for_kinds_with_a_status_subresource(k8s_client: KubeClient) -> None:
    created = k8s_client.create({**widget("w"), "status": {"phase": "Faked"}})
    assert "status" not in created
    assert "status" not in k8s_client.create({**job("j"), "status": {"succeeded": 1}}, "default")


def test_main_endpoint_ignores_status_changes(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    k8s_client.patch_status(API_VERSION, "Widget", "w", {"phase": "Running"}, "default")
    patched = k8s_client.patch(API_VERSION, "Widget", "w", {"spec": {"replicas": 2}, "status": {"phase": "Hacked"}},
                               "default")
    assert patched["status"] == {"phase": "Running"} and patched["spec"]["replicas"] == 2
    full = k8s_client.get(API_VERSION, "Widget", "w", "default")
    full["status"] = {"phase": "Overwritten"}
    assert k8s_client.replace(full)["status"] == {"phase": "Running"}


def test_status_endpoint_changes_only_the_status(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w", replicas=1))
    patch = {"spec": {"replicas": 9}, "metadata": {"labels": {"sneaky": "yes"}}, "status": {"phase": "Done"}}
    patched = k8s_client.patch(API_VERSION, "Widget", "w", patch, "default", sub="status")
    assert patched["status"] == {"phase": "Done"}
    assert patched["spec"]["replicas"] == 1 and "labels" not in patched["metadata"]
    full = k8s_client.get(API_VERSION, "Widget", "w", "default", sub="status")
    full["status"] = {"phase": "Again"}
    full["spec"]["image"] = "changed"
    replaced = k8s_client.replace(full, sub="status")
    assert replaced["status"] == {"phase": "Again"} and replaced["spec"]["image"] == "busybox"


def test_status_of_kinds_without_the_subresource_is_written_through_the_main_endpoint(k8s_client: KubeClient):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    k8s_client.create(cm, "default")
    with pytest.raises(ApiError) as err:
        k8s_client.patch_status("v1", "ConfigMap", "c", {"x": 1}, "default")
    assert err.value.status == 404


def test_pod_phase_is_driven_through_status(k8s_client: KubeClient) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec()}
    assert k8s_client.create(pod, "default")["status"]["phase"] == "Pending"  # set by the API server
    running = k8s_client.patch_status("v1", "Pod", "p", {"phase": "Running"}, "default")
    assert running["status"]["phase"] == "Running"
    listed = k8s_client.list("v1", "Pod", "default", fieldSelector="status.phase=Running")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["p"]


def test_scale_subresource_reads_and_writes_replicas(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w", replicas=2))
    k8s_client.patch_status(API_VERSION, "Widget", "w", {"replicas": 1, "selector": "app=w"}, "default")
    scale = k8s_client.get(API_VERSION, "Widget", "w", "default", sub="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 1, "selector": "app=w"}
    patched = k8s_client.patch(API_VERSION, "Widget", "w", {"spec": {"replicas": 5}}, "default", sub="scale")
    assert patched["spec"]["replicas"] == 5
    assert k8s_client.get(API_VERSION, "Widget", "w", "default")["spec"]["replicas"] == 5
    scale = k8s_client.get(API_VERSION, "Widget", "w", "default", sub="scale")
    scale["spec"]["replicas"] = 7
    response = k8s_client.http.put("/apis/example.dev/v1/namespaces/default/widgets/w/scale", json=scale)
    assert response.status_code == 200 and response.json()["spec"]["replicas"] == 7
    response = k8s_client.http.put("/apis/example.dev/v1/namespaces/default/widgets/w/scale", json=scale)
    assert response.status_code == 409  # the Scale's resourceVersion is stale now
    bad = k8s_client.http.patch("/apis/example.dev/v1/namespaces/default/widgets/w/scale",
                                json={"spec": {"replicas": -1}},
                                headers={"Content-Type": "application/merge-patch+json"})
    assert bad.status_code == 422


def test_deployment_scale_uses_its_selector(k8s_client: KubeClient) -> None:
    k8s_client.create(deployment("d", replicas=3), "default")
    scale = k8s_client.get("apps/v1", "Deployment", "d", "default", sub="scale")
    assert scale["spec"]["replicas"] == 3 and scale["status"]["selector"] == "app=d"
