"""Create / read / replace / patch semantics of the emulator over real HTTP."""

import pytest
from k8s_emulator.client import ApiError, KubeClient
from sample_crds import API_VERSION, deployment, widget, widget_crd


@pytest.fixture
def k8s_crds():
    return [widget_crd()]


@pytest.fixture
def k8s_namespaces():
    return ["default", "team"]


def _cm(name: str | None = None, **meta) -> dict:
    md = {"name": name, **meta} if name else dict(meta)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


def test_create_answers_201_and_fills_metadata(k8s_client: KubeClient) -> None:
    response = k8s_client.http.post("/api/v1/namespaces/team/configmaps", json=_cm("one"))
    assert response.status_code == 201
    md = response.json()["metadata"]
    assert md["namespace"] == "team"  # filled from the URL
    assert len(md["uid"]) == 36 and md["creationTimestamp"].endswith("Z")
    assert int(md["resourceVersion"]) > 0 and md["generation"] == 1


def test_resource_versions_are_global_and_increasing(k8s_client: KubeClient) -> None:
    a = k8s_client.create(_cm("a"), "team")
    b = k8s_client.create(widget("b"))
    c = k8s_client.patch("v1", "ConfigMap", "a", {"data": {"k": "w"}}, "team")
    rvs = [int(x["metadata"]["resourceVersion"]) for x in (a, b, c)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    assert a["metadata"]["uid"] != b["metadata"]["uid"]


def test_generate_name_gets_a_random_suffix(k8s_client: KubeClient) -> None:
    names = {k8s_client.create(_cm(generateName="job-"), "team")["metadata"]["name"] for _ in range(5)}
    assert len(names) == 5
    assert all(n.startswith("job-") and len(n) == len("job-") + 5 for n in names)


def test_missing_name_and_bad_names_are_422(k8s_client: KubeClient) -> None:
    with pytest.raises(ApiError) as err:
        k8s_client.create(_cm(), "team")
    assert err.value.status == 422 and "metadata.name" in err.value.body["message"]
    with pytest.raises(ApiError) as err:
        k8s_client.create(_cm("Upper_Case"), "team")
    assert err.value.status == 422 and "RFC 1123" in err.value.body["message"]


def test_label_values_longer_than_63_are_rejected(k8s_client: KubeClient) -> None:
    with pytest.raises(ApiError) as err:
        k8s_client.create(_cm("x", labels={"app": "a" * 64}), "team")
    assert err.value.status == 422 and "metadata.labels[app]" in err.value.body["message"]


def test_duplicate_create_is_409_and_unknown_namespace_404(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("dup"), "team")
    with pytest.raises(ApiError) as err:
        k8s_client.create(_cm("dup"), "team")
    assert err.value.status == 409 and err.value.body["reason"] == "AlreadyExists"
    with pytest.raises(ApiError) as err:
        k8s_client.create(_cm("x"), "nowhere")
    assert err.value.status == 404 and "nowhere" in err.value.body["message"]


def test_namespace_mismatch_between_url_and_body_is_400(k8s_client: KubeClient) -> None:
    response = k8s_client.http.post("/api/v1/namespaces/team/configmaps", json=_cm("x", namespace="default"))
    assert response.status_code == 400


def test_get_missing_object_is_404_status(k8s_client: KubeClient) -> None:
    with pytest.raises(ApiError) as err:
        k8s_client.get("v1", "ConfigMap", "absent", "team")
    assert err.value.status == 404 and err.value.body["kind"] == "Status"


def test_put_replaces_and_checks_resource_version(k8s_client: KubeClient) -> None:
    created = k8s_client.create(_cm("cm"), "team")
    created["data"] = {"new": "1"}
    replaced = k8s_client.replace(created)
    assert replaced["data"] == {"new": "1"}
    assert int(replaced["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    with pytest.raises(ApiError) as err:  # the same (now stale) resourceVersion again
        k8s_client.replace(created)
    assert err.value.status == 409 and err.value.body["reason"] == "Conflict"
    unconditional = dict(created, metadata={"name": "cm", "namespace": "team"}, data={"n": "2"})
    assert k8s_client.replace(unconditional)["data"] == {"n": "2"}  # no resourceVersion: no check


def test_merge_patch_with_stale_resource_version_is_409(k8s_client: KubeClient) -> None:
    created = k8s_client.create(_cm("cm"), "team")
    k8s_client.patch("v1", "ConfigMap", "cm", {"data": {"k": "2"}}, "team")
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"k": "3"}}
    with pytest.raises(ApiError) as err:
        k8s_client.patch("v1", "ConfigMap", "cm", stale, "team")
    assert err.value.status == 409
    assert k8s_client.get("v1", "ConfigMap", "cm", "team")["data"] == {"k": "2"}


def test_json_patch_test_op_fails_with_422_like_kopf_expects(k8s_client: KubeClient) -> None:
    created = k8s_client.create(widget("w"))
    rv = created["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "add", "path": "/metadata/finalizers", "value": ["example.dev/cleanup"]}]
    patched = k8s_client.patch(API_VERSION, "Widget", "w", ops, "default", patch_type="json")
    assert patched["metadata"]["finalizers"] == ["example.dev/cleanup"]
    with pytest.raises(ApiError) as err:  # rv moved on: the test op fails
        k8s_client.patch(API_VERSION, "Widget", "w", ops, "default", patch_type="json")
    assert err.value.status == 422


def test_json_patch_ops(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("cm"), "team")
    ops = [{"op": "add", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/k", "value": "x"},
           {"op": "copy", "from": "/data/a", "path": "/data/b"}, {"op": "move", "from": "/data/b", "path": "/data/c"},
           {"op": "remove", "path": "/data/a"}]
    assert k8s_client.patch("v1", "ConfigMap", "cm", ops, "team", patch_type="json")["data"] == {"k": "x", "c": "1"}
    with pytest.raises(ApiError) as err:
        k8s_client.patch("v1", "ConfigMap", "cm", [{"op": "remove", "path": "/data/zzz"}], "team", patch_type="json")
    assert err.value.status == 422


def test_merge_patch_null_deletes_keys(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("cm", labels={"a": "1", "b": "2"}), "team")
    patched = k8s_client.patch("v1", "ConfigMap", "cm", {"metadata": {"labels": {"a": None}}}, "team")
    assert patched["metadata"]["labels"] == {"b": "2"}


def test_strategic_merge_patch_merges_containers_by_name(k8s_client: KubeClient) -> None:
    manifest = deployment("d")
    containers = [{"name": "a", "image": "one:1"}, {"name": "b", "image": "two:1"}]
    manifest["spec"]["template"]["spec"]["containers"] = containers
    k8s_client.create(manifest, "team")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "three:1"}]}}}}
    patched = k8s_client.patch("apps/v1", "Deployment", "d", patch, "team", patch_type="strategic")
    images = [(c["name"], c["image"]) for c in patched["spec"]["template"]["spec"]["containers"]]
    assert images == [("a", "one:1"), ("b", "three:1")]
    merged = k8s_client.patch("apps/v1", "Deployment", "d", patch, "team", patch_type="merge")
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["b"]  # merge replaces lists


def test_strategic_merge_patch_is_refused_for_custom_resources(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    with pytest.raises(ApiError) as err:
        k8s_client.patch(API_VERSION, "Widget", "w", {"spec": {"replicas": 2}}, "default", patch_type="strategic")
    assert err.value.status == 415


def test_unknown_patch_content_type_is_415(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("cm"), "team")
    response = k8s_client.http.patch("/api/v1/namespaces/team/configmaps/cm", content=b"{}",
                                     headers={"Content-Type": "application/xml"})
    assert response.status_code == 415


def test_server_side_apply_creates_then_merges(k8s_client: KubeClient) -> None:
    url = "/api/v1/namespaces/team/configmaps/applied"
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    created = k8s_client.http.patch(url, content=manifest.encode(), headers=headers, params={"fieldManager": "t"})
    assert created.status_code == 201 and created.json()["data"] == {"a": "1"}
    updated = k8s_client.http.patch(url, json={"apiVersion": "v1", "kind": "ConfigMap", "data": {"b": "2"}},
                                    headers=headers, params={"fieldManager": "t"})
    assert updated.status_code == 200 and updated.json()["data"] == {"a": "1", "b": "2"}


def test_generation_bumps_on_spec_changes_only(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    after_meta = k8s_client.patch(API_VERSION, "Widget", "w", {"metadata": {"labels": {"x": "y"}}}, "default")
    assert after_meta["metadata"]["generation"] == 1
    after_status = k8s_client.patch_status(API_VERSION, "Widget", "w", {"phase": "Running"}, "default")
    assert after_status["metadata"]["generation"] == 1
    after_spec = k8s_client.patch(API_VERSION, "Widget", "w", {"spec": {"replicas": 3}}, "default")
    assert after_spec["metadata"]["generation"] == 2


def test_noop_patch_keeps_the_resource_version(k8s_client: KubeClient) -> None:
    created = k8s_client.create(_cm("cm"), "team")
    same = k8s_client.patch("v1", "ConfigMap", "cm", {"data": {"k": "v"}}, "team")
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_cluster_scoped_objects_have_no_namespace(k8s_client: KubeClient) -> None:
    ns = k8s_client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "extra"}})
    assert "namespace" not in ns["metadata"]
    names = [n["metadata"]["name"] for n in k8s_client.list("v1", "Namespace")["items"]]
    assert {"default", "team", "extra"} <= set(names)
    assert k8s_client.get("v1", "Namespace", "extra")["metadata"]["uid"] == ns["metadata"]["uid"]


def test_unknown_resource_is_404(k8s_client: KubeClient) -> None:
    assert k8s_client.http.get("/apis/nope.dev/v1/namespaces/default/things").status_code == 404


def test_server_version_and_discovery_include_crds(k8s_client: KubeClient) -> None:
    assert k8s_client.http.get("/version").json()["minor"] == "30"
    groups = {g["name"] for g in k8s_client.http.get("/apis").json()["groups"]}
    assert {"example.dev", "batch", "apps"} <= groups
    listing = k8s_client.http.get("/apis/example.dev/v1").json()
    names = {r["name"] for r in listing["resources"]}
    assert names == {"widgets", "widgets/status", "widgets/scale"}


def test_strict_field_validation_rejects_unknown_fields(k8s_client: KubeClient) -> None:
    cm = {**_cm("strict"), "bogus": 1}
    strict = k8s_client.http.post("/api/v1/namespaces/team/configmaps", json=cm, params={"fieldValidation": "Strict"})
    assert strict.status_code == 400 and "bogus" in strict.json()["message"]
    typo = {**widget("w"), "spec": {"image": "x", "replica": 2}}
    response = k8s_client.http.post("/apis/example.dev/v1/namespaces/default/widgets", json=typo,
                                    params={"fieldValidation": "Strict"})
    assert response.status_code == 400 and "spec.replica" in response.json()["message"]
    lenient = k8s_client.http.post("/apis/example.dev/v1/namespaces/default/widgets", json=typo)
    assert lenient.status_code == 201 and "replica" not in lenient.json()["spec"]  # pruned without Strict


def test_openapi_v3_advertises_server_side_field_validation(k8s_client: KubeClient) -> None:
    paths = k8s_client.http.get("/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/batch/v1", "apis/example.dev/v1"} <= set(paths)
    doc = k8s_client.http.get("/" + paths["apis/batch/v1"]["serverRelativeURL"].lstrip("/")).json()
    patch = doc["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "batch", "version": "v1", "kind": "Job"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert k8s_client.http.get("/openapi/v3/apis/nope.dev/v1").status_code == 404
    assert k8s_client.http.get("/api/v1").json()["groupVersion"] == "v1"
