"""What kubectl needs from the emulator: Table printing (printer columns), JSON watch streams, pod logs."""

from __future__ import annotations

import httpx
import pytest
from k8s_emulator.server import EmulatorThread
from k8s_emulator.tables import human_age, jsonpath
from sample_crds import widget_crd

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_jsonpath_subset():
    obj = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}],
                      "stages": [{"name": "a"}, {"name": "b"}], "n": 3}}
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".status.stages[*].name") == ["a", "b"]
    assert jsonpath(obj, ".status.stages[1].name") == ["b"]
    assert jsonpath(obj, ".status.n") == [3] and jsonpath(obj, ".status.missing") == []
    assert human_age("2000-01-01T00:00:00Z").endswith("d")


@pytest.fixture
def served():
    crd = widget_crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]
    with EmulatorThread(crds=[crd], namespaces=["ns"]) as k8s:
        yield k8s, crd


def test_tables_logs_and_watch_content_type(served):
    k8s, crd = served
    group, version = crd["spec"]["group"], crd["spec"]["versions"][0]["name"]
    plural = crd["spec"]["names"]["plural"]
    base = f"{k8s.url}/apis/{group}/{version}/namespaces/ns/{plural}"
    with httpx.Client() as http:
        created = http.post(base, json={"apiVersion": f"{group}/{version}", "kind": crd["spec"]["names"]["kind"],
                                        "metadata": {"name": "w"}, "spec": {"image": "x", "replicas": 3}})
        assert created.status_code == 201, created.text
        table = http.get(base, headers={"Accept": TABLE}).json()
        assert table["kind"] == "Table"
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Replicas", "Age"]
        assert table["rows"][0]["cells"][:2] == ["w", 3]  # an integer cell stays an integer
        assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
        assert http.get(base).json()["kind"].endswith("List")  # plain JSON without the Table Accept
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "x"}]}}
        assert http.post(f"{k8s.url}/api/v1/namespaces/ns/pods", json=pod).status_code == 201
        k8s.emulator.pod_logs[("ns", "p")] = "one\ntwo\nthree\n"
        logs = http.get(f"{k8s.url}/api/v1/namespaces/ns/pods/p/log", params={"tailLines": "2"})
        assert logs.text == "two\nthree\n" and logs.headers["content-type"].startswith("text/plain")
        assert http.get(f"{k8s.url}/api/v1/namespaces/ns/pods/nope/log").status_code == 404
        with http.stream("GET", base, params={"watch": "1", "timeoutSeconds": "1"}) as stream:
            assert stream.headers["content-type"].startswith("application/json")
