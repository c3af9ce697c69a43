"""kopf runs against the emulator end to end: discovery, watches, finalizers, status, events, GC, restarts."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest
import sample_operator
from k8s_emulator.client import ApiError, KubeClient
from kopf.testing import KopfRunner
from sample_crds import API_VERSION, widget, widget_crd

ARGS = ["run", "--standalone", "--namespace", "apps", "--verbose"]


@pytest.fixture
def k8s_crds():
    return [widget_crd()]


@pytest.fixture
def k8s_namespaces():
    return ["apps"]


@pytest.fixture(autouse=True)
def _restore_kopf_default_registry() -> Iterator[None]:
    # `kopf run` with an explicit registry makes it the process-wide default: put the previous one back
    # so operators tested later in the same process (codekiln's own) still find their handlers.
    saved = kopf.get_default_registry()
    yield
    kopf.set_default_registry(saved)


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (ApiError, KeyError, AssertionError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {check}")
        time.sleep(0.1)


def test_kopf_operator_lifecycle(k8s_client: KubeClient) -> None:
    with KopfRunner(ARGS, registry=sample_operator.registry, timeout=60) as runner:
        k8s_client.create(widget("w1", "apps", replicas=2))
        job = wait_for(lambda: k8s_client.get("batch/v1", "Job", "w1-job", "apps"))
        owner = k8s_client.get(API_VERSION, "Widget", "w1", "apps")
        assert job["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        assert owner["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        wait_for(lambda: k8s_client.get(API_VERSION, "Widget", "w1", "apps")["status"]["phase"] == "Pending")

        # Drive the Job the way the Job controller would; the operator reacts to the status change.
        k8s_client.patch_status("batch/v1", "Job", "w1-job", {"succeeded": 1}, "apps")
        wait_for(lambda: k8s_client.get(API_VERSION, "Widget", "w1", "apps")["status"]["phase"] == "Succeeded")

        k8s_client.patch(API_VERSION, "Widget", "w1", {"spec": {"replicas": 4}}, "apps")
        wait_for(lambda: k8s_client.get(API_VERSION, "Widget", "w1", "apps")["status"]["replicas"] == 4)

        reasons = wait_for(lambda: {e["reason"] for e in k8s_client.list("v1", "Event", "apps")["items"]}
                           if "JobCreated" in {e["reason"] for e in k8s_client.list("v1", "Event", "apps")["items"]}
                           else None)
        assert "JobCreated" in reasons

        k8s_client.delete(API_VERSION, "Widget", "w1", "apps")
        wait_for(lambda: not k8s_client.list(API_VERSION, "Widget", "apps")["items"])
        assert k8s_client.list("batch/v1", "Job", "apps")["items"] == []  # garbage-collected
    assert runner.exit_code == 0, runner.output
    assert "cleaning up w1" in runner.output
    assert "Traceback" not in runner.output, runner.output


def test_kopf_restart_does_not_handle_twice(k8s_client: KubeClient) -> None:
    with KopfRunner(ARGS, registry=sample_operator.registry, timeout=60) as first:
        k8s_client.create(widget("w2", "apps"))
        wait_for(lambda: k8s_client.get(API_VERSION, "Widget", "w2", "apps")["status"]["job"] == "w2-job")
    assert first.exit_code == 0, first.output
    with KopfRunner(ARGS, registry=sample_operator.registry, timeout=60) as second:
        time.sleep(2.0)  # let it list, watch and (not) re-handle
    assert second.exit_code == 0, second.output
    assert "Handler 'create_widget' is invoked" not in second.output  # handled before the restart
    assert len(k8s_client.list("batch/v1", "Job", "apps")["items"]) == 1


def test_kopf_reports_schema_rejections_of_its_own_patches(k8s_client: KubeClient) -> None:
    with KopfRunner(ARGS, registry=sample_operator.registry, timeout=60) as runner:
        k8s_client.create(widget("w3", "apps"))
        wait_for(lambda: k8s_client.get("batch/v1", "Job", "w3-job", "apps"))
        with pytest.raises(ApiError) as err:
            k8s_client.patch(API_VERSION, "Widget", "w3", {"spec": {"replicas": -3}}, "apps")
        assert err.value.status == 422
    assert runner.exit_code == 0, runner.output
