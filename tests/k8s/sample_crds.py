"""A hand-written CRD used by the emulator's own tests (independent of codekiln's generated CRDs)."""

from typing import Any

GROUP = "example.dev"
API_VERSION = f"{GROUP}/v1"


def widget_crd() -> dict[str, Any]:
    """``Widget``: namespaced, status and scale subresources, a schema exercising the validator."""
    spec_schema = {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {"type": "string", "minLength": 1},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1},
            "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
            "handle": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"},
            "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
            "limits": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "port": {"x-kubernetes-int-or-string": True},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "nested": {"type": "object", "properties": {
                "level": {"type": "integer", "maximum": 5},
                "items": {"type": "array", "items": {"type": "object", "required": ["id"],
                                                     "properties": {"id": {"type": "integer"}}}},
            }},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector"}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": spec_schema,
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"}, "selector": {"type": "string"},
                            "phase": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            }],
        },
    }


def widget(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A Widget manifest (``image`` defaults to ``busybox``)."""
    return {"apiVersion": API_VERSION, "kind": "Widget", "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "busybox", **spec}}


def pod_spec(restart_policy: str = "Never") -> dict[str, Any]:
    """A minimal valid pod spec."""
    return {"restartPolicy": restart_policy, "containers": [{"name": "main", "image": "busybox:1.36"}]}


def job(name: str, **spec: Any) -> dict[str, Any]:
    """A minimal valid Job manifest."""
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": pod_spec()}, **spec}}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    """A minimal valid Deployment manifest."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec("Always")}}}
