"""Deletion: finalizers and deletionTimestamp, ownerReference garbage collection, propagation policies."""

import pytest
from k8s_emulator.client import ApiError, KubeClient
from sample_crds import API_VERSION, pod_spec, widget, widget_crd


@pytest.fixture
def k8s_crds():
    return [widget_crd()]


def _owned(kind: str, api_version: str, name: str, *owners: dict) -> dict:
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "controller": i == 0, "blockOwnerDeletion": True}
            for i, o in enumerate(owners)]
    body: dict = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "ownerReferences": refs}}
    if kind == "ConfigMap":
        body["data"] = {}
    else:
        body["spec"] = {"template": {"spec": pod_spec()}} if kind == "Job" else pod_spec()
    return body


def _exists(client: KubeClient, api_version: str, kind: str, name: str) -> bool:
    try:
        client.get(api_version, kind, name, "default")
        return True
    except ApiError as err:
        assert err.status == 404
        return False


def test_delete_without_finalizers_removes_at_once(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    gone = k8s_client.delete(API_VERSION, "Widget", "w", "default")
    assert gone["metadata"]["name"] == "w"
    assert not _exists(k8s_client, API_VERSION, "Widget", "w")
    with pytest.raises(ApiError) as err:
        k8s_client.delete(API_VERSION, "Widget", "w", "default")
    assert err.value.status == 404


def test_finalizers_hold_the_object_until_the_last_is_removed(k8s_client: KubeClient) -> None:
    k8s_client.create({**widget("w"), "metadata": {"name": "w", "finalizers": ["a/one", "b/two"]}})
    marked = k8s_client.delete(API_VERSION, "Widget", "w", "default")
    assert marked["metadata"]["deletionTimestamp"]
    again = k8s_client.delete(API_VERSION, "Widget", "w", "default")
    assert again["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as err:
        k8s_client.patch(API_VERSION, "Widget", "w", {"metadata": {"finalizers": ["a/one", "b/two", "c/new"]}},
                         "default")
    assert err.value.status == 422 and "no new finalizers" in err.value.body["message"]
    k8s_client.patch(API_VERSION, "Widget", "w", {"metadata": {"finalizers": ["b/two"]}}, "default")
    assert _exists(k8s_client, API_VERSION, "Widget", "w")
    k8s_client.patch(API_VERSION, "Widget", "w", {"metadata": {"finalizers": None}}, "default")
    assert not _exists(k8s_client, API_VERSION, "Widget", "w")


def test_deleting_an_owner_cascades_through_dependents(k8s_client: KubeClient) -> None:
    owner = k8s_client.create(widget("w"))
    job = k8s_client.create(_owned("Job", "batch/v1", "w-job", owner), "default")
    k8s_client.create(_owned("Pod", "v1", "w-job-0", job), "default")
    k8s_client.create(_owned("ConfigMap", "v1", "w-cfg", owner), "default")
    k8s_client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "free"}, "data": {}}, "default")
    k8s_client.delete(API_VERSION, "Widget", "w", "default")
    assert not _exists(k8s_client, "batch/v1", "Job", "w-job")
    assert not _exists(k8s_client, "v1", "Pod", "w-job-0")
    assert not _exists(k8s_client, "v1", "ConfigMap", "w-cfg")
    assert _exists(k8s_client, "v1", "ConfigMap", "free")


def test_dependents_wait_for_an_owner_held_by_finalizers(k8s_client: KubeClient) -> None:
    owner = k8s_client.create({**widget("w"), "metadata": {"name": "w", "finalizers": ["x/y"]}})
    k8s_client.create(_owned("ConfigMap", "v1", "child", owner), "default")
    k8s_client.delete(API_VERSION, "Widget", "w", "default")
    assert _exists(k8s_client, "v1", "ConfigMap", "child")
    k8s_client.patch(API_VERSION, "Widget", "w", {"metadata": {"finalizers": []}}, "default")
    assert not _exists(k8s_client, "v1", "ConfigMap", "child")


def test_a_dependent_with_another_live_owner_survives(k8s_client: KubeClient) -> None:
    first = k8s_client.create(widget("a"))
    second = k8s_client.create(widget("b"))
    k8s_client.create(_owned("ConfigMap", "v1", "shared", first, second), "default")
    k8s_client.delete(API_VERSION, "Widget", "a", "default")
    assert _exists(k8s_client, "v1", "ConfigMap", "shared")
    k8s_client.delete(API_VERSION, "Widget", "b", "default")
    assert not _exists(k8s_client, "v1", "ConfigMap", "shared")


def test_orphan_propagation_keeps_dependents_and_drops_their_owner_reference(k8s_client: KubeClient) -> None:
    owner = k8s_client.create(widget("w"))
    k8s_client.create(_owned("ConfigMap", "v1", "child", owner), "default")
    k8s_client.delete(API_VERSION, "Widget", "w", "default", propagation="Orphan")
    child = k8s_client.get("v1", "ConfigMap", "child", "default")
    assert "ownerReferences" not in child["metadata"]


def test_foreground_propagation_deletes_dependents_first(k8s_client: KubeClient) -> None:
    owner = k8s_client.create({**widget("w"), "metadata": {"name": "w", "finalizers": ["x/y"]}})
    k8s_client.create(_owned("ConfigMap", "v1", "child", owner), "default")
    k8s_client.delete(API_VERSION, "Widget", "w", "default", propagation="Foreground")
    assert not _exists(k8s_client, "v1", "ConfigMap", "child")
    assert _exists(k8s_client, API_VERSION, "Widget", "w")  # still held by its own finalizer


def test_delete_preconditions(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    response = k8s_client.http.request("DELETE", "/apis/example.dev/v1/namespaces/default/widgets/w",
                                       json={"preconditions": {"uid": "not-the-uid"}})
    assert response.status_code == 409
    assert _exists(k8s_client, API_VERSION, "Widget", "w")


def test_delete_collection_by_label(k8s_client: KubeClient) -> None:
    for i, team in enumerate(["a", "a", "b"]):
        k8s_client.create({"apiVersion": "v1", "kind": "ConfigMap", "data": {},
                           "metadata": {"name": f"c{i}", "labels": {"team": team}}}, "default")
    response = k8s_client.http.delete("/api/v1/namespaces/default/configmaps", params={"labelSelector": "team=a"})
    assert response.status_code == 200
    assert [c["metadata"]["name"] for c in k8s_client.list("v1", "ConfigMap", "default")["items"]] == ["c2"]


def test_deleting_a_namespace_deletes_its_contents(k8s_client: KubeClient) -> None:
    k8s_client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}})
    k8s_client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}, "tmp")
    k8s_client.delete("v1", "Namespace", "tmp")
    assert k8s_client.list("v1", "ConfigMap", "tmp")["items"] == []
    with pytest.raises(ApiError) as err:
        k8s_client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}, "tmp")
    assert err.value.status == 404


def test_deleting_a_crd_stops_serving_its_kind(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    k8s_client.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.dev")
    response = k8s_client.http.get("/apis/example.dev/v1/namespaces/default/widgets")
    assert response.status_code == 404


def test_jobs_orphan_their_pods_unless_told_otherwise(k8s_client: KubeClient) -> None:
    job = k8s_client.create(_owned("Job", "batch/v1", "j"), "default")
    k8s_client.create(_owned("Pod", "v1", "j-0", job), "default")
    k8s_client.delete("batch/v1", "Job", "j", "default")  # the API's legacy default for Jobs: Orphan
    assert "ownerReferences" not in k8s_client.get("v1", "Pod", "j-0", "default")["metadata"]
    job = k8s_client.create(_owned("Job", "batch/v1", "k"), "default")
    k8s_client.create(_owned("Pod", "v1", "k-0", job), "default")
    k8s_client.delete("batch/v1", "Job", "k", "default", propagation="Background")
    assert not _exists(k8s_client, "v1", "Pod", "k-0")


def test_foreground_owner_waits_for_blocked_dependents(k8s_client: KubeClient) -> None:
    owner = k8s_client.create(widget("w"))
    child = _owned("ConfigMap", "v1", "child", owner)
    child["metadata"]["finalizers"] = ["x/hold"]
    k8s_client.create(child, "default")
    marked = k8s_client.delete(API_VERSION, "Widget", "w", "default", propagation="Foreground")
    assert marked["metadata"]["finalizers"] == ["foregroundDeletion"] and marked["metadata"]["deletionTimestamp"]
    assert k8s_client.get("v1", "ConfigMap", "child", "default")["metadata"]["deletionTimestamp"]
    assert _exists(k8s_client, API_VERSION, "Widget", "w")
    k8s_client.patch("v1", "ConfigMap", "child", {"metadata": {"finalizers": None}}, "default")
    assert not _exists(k8s_client, "v1", "ConfigMap", "child")
    assert not _exists(k8s_client, API_VERSION, "Widget", "w")  # released once its last dependent went
