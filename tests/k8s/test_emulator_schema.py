"""CRD schema handling: defaulting, pruning, and 422 errors that name the field."""

import pytest
from k8s_emulator import schema
from k8s_emulator.client import ApiError, KubeClient
from sample_crds import API_VERSION, widget, widget_crd


@pytest.fixture
def k8s_crds():
    return [widget_crd()]


def _reject(client: KubeClient, body: dict) -> dict:
    with pytest.raises(ApiError) as err:
        client.create(body)
    assert err.value.status == 422 and err.value.body["reason"] == "Invalid"
    return err.value.body


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"replicas": -1}, "spec.replicas", "greater than or equal to 0"),
    ({"replicas": 101}, "spec.replicas", "less than or equal to 100"),
    ({"replicas": "two"}, "spec.replicas", "must be of type integer"),
    ({"replicas": True}, "spec.replicas", "must be of type integer"),
    ({"mode": "turbo"}, "spec.mode", 'supported values: "fast", "safe"'),
    ({"handle": "Bad_Name"}, "spec.handle", "should match"),
    ({"ratio": 0}, "spec.ratio", "greater than 0"),
    ({"tags": ["a", "b", "c", "d"]}, "spec.tags", "at most 3 items"),
    ({"tags": [1]}, "spec.tags[0]", "must be of type string"),
    ({"limits": {"cpu": -2}}, "spec.limits[cpu]", "greater than or equal to 0"),
    ({"port": 1.5}, "spec.port", "integer or string"),
    ({"nested": {"level": 9}}, "spec.nested.level", "less than or equal to 5"),
    ({"nested": {"items": [{"id": 1}, {}]}}, "spec.nested.items[1].id", "Required value"),
    ({"image": ""}, "spec.image", "at least 1 chars long"),
])
def test_invalid_specs_are_rejected_naming_the_field(k8s_client: KubeClient, spec: dict, field: str,
                                                     words: str) -> None:
    body = _reject(k8s_client, widget("w", **spec))
    causes = body["details"]["causes"]
    assert [c["field"] for c in causes] == [field], causes
    assert words in body["message"] and body["message"].startswith('Widget.example.dev "w" is invalid: ')


def test_required_fields(k8s_client: KubeClient) -> None:
    body = _reject(k8s_client, {"apiVersion": API_VERSION, "kind": "Widget", "metadata": {"name": "w"}, "spec": {}})
    assert body["details"]["causes"][0]["field"] == "spec.image"
    assert "spec.image: Required value" in body["message"]


def test_several_errors_are_all_reported(k8s_client: KubeClient) -> None:
    body = _reject(k8s_client, widget("w", replicas=-5, mode="x"))
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.replicas", "spec.mode"}


def test_updates_are_validated_too(k8s_client: KubeClient) -> None:
    k8s_client.create(widget("w"))
    with pytest.raises(ApiError) as err:
        k8s_client.patch(API_VERSION, "Widget", "w", {"spec": {"replicas": -1}}, "default")
    assert err.value.status == 422 and "spec.replicas" in err.value.body["message"]
    with pytest.raises(ApiError) as err:
        k8s_client.patch_status(API_VERSION, "Widget", "w", {"replicas": "many"}, "default")
    assert err.value.status == 422 and "status.replicas" in err.value.body["message"]


def test_defaults_are_applied_and_unknown_fields_pruned(k8s_client: KubeClient) -> None:
    created = k8s_client.create(widget("w", unknownField=1, extra={"anything": {"goes": [1]}}))
    assert created["spec"]["replicas"] == 1 and created["spec"]["mode"] == "safe"
    assert "unknownField" not in created["spec"]
    assert created["spec"]["extra"] == {"anything": {"goes": [1]}}  # x-kubernetes-preserve-unknown-fields


def test_int_or_string_accepts_both(k8s_client: KubeClient) -> None:
    assert k8s_client.create(widget("a", port=8080))["spec"]["port"] == 8080
    assert k8s_client.create(widget("b", port="http"))["spec"]["port"] == "http"


def test_invalid_crd_is_rejected(k8s_client: KubeClient) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "wrong.example.dev"
    with pytest.raises(ApiError) as err:
        k8s_client.create(crd)
    assert err.value.status == 422 and "spec.names.plural" in err.value.body["message"]


def test_created_crd_is_established_and_served(k8s_client: KubeClient) -> None:
    crd = k8s_client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.dev")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}


def test_validator_combinators_and_nullable() -> None:
    any_of = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert schema.validate(3, any_of) == [] and schema.validate("x", any_of) == []
    assert schema.validate([1], any_of, "f")[0].field == "f"
    one_of = {"oneOf": [{"minimum": 0}, {"maximum": 10}]}
    assert schema.validate(5, {"type": "integer", **one_of}, "n")  # matches both branches
    assert schema.validate(None, {"type": "string", "nullable": True}) == []
    assert schema.validate(None, {"type": "string"}, "s")[0].reason == "FieldValueTypeInvalid"
    assert schema.validate(["a", "a"], {"type": "array", "x-kubernetes-list-type": "set"}, "l")[0].reason \
        == "FieldValueDuplicate"
