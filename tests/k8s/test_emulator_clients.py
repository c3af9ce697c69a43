"""Other clients against the emulator: the official kubernetes client (sync) and aiohttp in async tests."""

import aiohttp
import kmock
import kubernetes
import pytest
from k8s_emulator import Emulator
from k8s_emulator.server import EmulatorThread
from sample_crds import API_VERSION, job, widget, widget_crd


@pytest.fixture
def k8s_crds():
    return [widget_crd()]


def test_kubernetes_client_round_trip(k8s: EmulatorThread) -> None:
    kubernetes.config.load_kube_config()  # the k8s fixture pointed $KUBECONFIG at the emulator
    batch, core = kubernetes.client.BatchV1Api(), kubernetes.client.CoreV1Api()
    created = batch.create_namespaced_job("default", job("train", completions=2, parallelism=2))
    assert created.metadata.uid and created.spec.selector.match_labels  # 201 + defaults, deserialised
    batch.patch_namespaced_job_status("train", "default", {"status": {"active": 2}})
    assert batch.read_namespaced_job("train", "default").status.active == 2
    listed = batch.list_namespaced_job("default", label_selector="missing=label")
    assert listed.items == []
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.read_namespaced_config_map("absent", "default")
    assert err.value.status == 404
    core.create_namespaced_event("default", {
        "metadata": {"generateName": "train-"}, "type": "Normal", "reason": "Started", "message": "go",
        "involvedObject": {"kind": "Job", "name": "train", "namespace": "default", "uid": created.metadata.uid}})
    kubernetes.client.EventsV1Api().create_namespaced_event("default", {
        "metadata": {"generateName": "train-"}, "type": "Normal", "reason": "Started", "action": "Start",
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "codekiln.dev/operator",
        "reportingInstance": "operator-0", "regarding": {"kind": "Job", "name": "train", "namespace": "default"}})
    assert [e.reason for e in core.list_namespaced_event("default").items] == ["Started"]
    assert len(kubernetes.client.EventsV1Api().list_namespaced_event("default").items) == 1
    batch.delete_namespaced_job("train", "default", propagation_policy="Background")
    assert batch.list_namespaced_job("default").items == []


def test_kubernetes_client_custom_objects_and_watch(k8s: EmulatorThread) -> None:
    kubernetes.config.load_kube_config()
    api = kubernetes.client.CustomObjectsApi()
    api.create_namespaced_custom_object("example.dev", "v1", "default", "widgets", widget("w"))
    api.patch_namespaced_custom_object_status("example.dev", "v1", "default", "widgets", "w",
                                              {"status": {"phase": "Ready"}})
    assert api.get_namespaced_custom_object("example.dev", "v1", "default", "widgets", "w")["status"] == {
        "phase": "Ready"}
    stream = kubernetes.watch.Watch().stream(api.list_namespaced_custom_object, "example.dev", "v1", "default",
                                             "widgets", timeout_seconds=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in stream] == [("ADDED", "w")]
    with pytest.raises(kubernetes.client.ApiException) as err:
        api.create_namespaced_custom_object("example.dev", "v1", "default", "widgets", widget("x", replicas=-1))
    assert err.value.status == 422 and "spec.replicas" in err.value.body


async def test_async_tests_can_serve_the_emulator_on_their_own_loop() -> None:
    async with Emulator() as emulator, kmock.Server(emulator) as server:
        emulator.install_crds([widget_crd()])
        async with aiohttp.ClientSession(str(server.url)) as http:
            response = await http.post("/apis/example.dev/v1/namespaces/default/widgets", json=widget("w"))
            assert response.status == 201
            async with http.get("/apis/example.dev/v1/namespaces/default/widgets/w",
                                params={"watch": "true", "timeoutSeconds": "1"}) as watch:
                lines = [line async for line in watch.content if line.strip()]
    assert len(lines) == 1 and b'"ADDED"' in lines[0]
    assert emulator.get(kmock.resource(API_VERSION + "/widgets"), "default", "w")["spec"]["image"] == "busybox"
