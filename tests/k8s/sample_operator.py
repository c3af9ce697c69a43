"""A tiny kopf operator used to prove the emulator serves everything kopf needs.

Handlers live in their own registry so they never leak into other tests' operators.
"""

from typing import Any

import kopf
import kubernetes

registry = kopf.OperatorRegistry()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # A bare OperatorRegistry has no default login handlers: read $KUBECONFIG (set by the k8s fixture).
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.create("example.dev", "v1", "widgets", registry=registry)
def create_widget(spec: dict[str, Any], name: str, namespace: str, body: Any, patch: Any,
                  logger: Any, **_: Any) -> dict[str, Any]:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-job", "labels": {"widget": name}},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "main", "image": spec["image"]}]}}}}
    kopf.adopt(job, owner=body)
    kubernetes.config.load_kube_config()
    created = kubernetes.client.BatchV1Api().create_namespaced_job(namespace, job)
    patch.status["job"] = created.metadata.name
    patch.status["phase"] = "Pending"
    kopf.info(body, reason="JobCreated", message=f"created {created.metadata.name}")
    return {"job": created.metadata.name}


@kopf.on.field("batch", "v1", "jobs", field="status.succeeded", labels={"widget": kopf.PRESENT}, registry=registry)
def job_progress(new: Any, namespace: str, labels: dict[str, str], **_: Any) -> None:
    if new:
        kubernetes.config.load_kube_config()
        kubernetes.client.CustomObjectsApi().patch_namespaced_custom_object_status(
            "example.dev", "v1", namespace, "widgets", labels["widget"], {"status": {"phase": "Succeeded"}})


@kopf.on.update("example.dev", "v1", "widgets", field="spec.replicas", registry=registry)
def scale_widget(new: Any, patch: Any, **_: Any) -> None:
    patch.status["replicas"] = new


@kopf.on.delete("example.dev", "v1", "widgets", registry=registry)
def delete_widget(name: str, logger: Any, **_: Any) -> None:
    logger.info(f"cleaning up {name}")
