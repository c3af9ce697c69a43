"""E2E harness: the k8s emulator, the real kopf operator in a thread, and test drivers.

The drivers play the parts of the Kubernetes controllers the emulator does not run: the Job
controller (pods per completion index, Job status and conditions), the kubelet (pod phases,
exit codes) and the Deployment controller (replica counts). Everything goes over real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s"))
os.environ.setdefault("CODEKILN_RESYNC_INTERVAL_S", "60")  # > every wait: tests prove event-driven reactions
os.environ.setdefault("CODEKILN_WATCH_TIMEOUT_S", "20")
os.environ.setdefault("CODEKILN_WORKER_IDLE_S", "1")

import kopf  # noqa: E402
from k8s_emulator.server import EmulatorThread  # noqa: E402

from codekiln.operator import handlers  # noqa: E402,F401 - registers the handlers
from codekiln.operator.crds import build_crds  # noqa: E402
from codekiln.operator.reconcile.kube import PLURALS, KubeConfig, api_path  # noqa: E402

API = "codekiln.dev/v1alpha1"
API_VERSIONS = {"Job": "batch/v1", "Pod": "v1", "Service": "v1", "ConfigMap": "v1", "ServiceAccount": "v1",
                "Event": "v1", "Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1",
                "PodGroup": "scheduling.volcano.sh/v1beta1", "Role": "rbac.authorization.k8s.io/v1",
                "RoleBinding": "rbac.authorization.k8s.io/v1",
                "DataPipeline": API, "PretrainRun": API, "RLRun": API, "SandboxPool": API}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class OperatorThread:
    """``kopf.operator()`` (standalone, cluster-wide) on its own loop in a thread, like ``KopfRunner``."""

    def __init__(self, url: str):
        self.url = url
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.memo: Any = None
        self.error: BaseException | None = None

    def start(self) -> OperatorThread:
        self._stop, self._ready, self.error = threading.Event(), threading.Event(), None
        self.memo = kopf.Memo(kube_config=KubeConfig(server=self.url))
        self._thread = threading.Thread(target=self._run, name="codekiln-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"operator did not start: {self.error!r}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(kopf.operator(standalone=True, clusterwide=True, memo=self.memo,
                                      stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        """Like SIGTERM: kopf stops, in-flight reconciles are cancelled."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "operator did not stop"
        self._thread = None

    @property
    def reconciler(self):
        return self.memo.reconciler


class Cluster:
    """Sync HTTP access to the emulator plus the controller drivers."""

    def __init__(self, k8s: EmulatorThread, namespace: str):
        self.k8s, self.ns = k8s, namespace
        self.http = httpx.Client(base_url=k8s.url, timeout=10)
        k8s.call(k8s.emulator.ensure_namespace, namespace)

    # ------------------------------------------------------------- REST
    def path(self, kind: str, name: str | None = None, sub: str | None = None) -> str:
        return api_path(API_VERSIONS[kind], PLURALS[kind], self.ns, name, sub)

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": self.ns}}
        doc["metadata"].pop("uid", None)
        response = self.http.post(self.path(doc["kind"]), json=doc)
        assert response.status_code == 201, response.text
        return response.json()

    def try_create(self, doc: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.path(doc["kind"]), json={**doc, "metadata": {**doc["metadata"],
                                                                                  "namespace": self.ns}})

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        response = self.http.get(self.path(kind, name))
        return None if response.status_code == 404 else response.raise_for_status().json()

    def list(self, kind: str, labels: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": labels} if labels else {}
        return self.http.get(self.path(kind), params=params).raise_for_status().json()["items"]

    def names(self, kind: str, labels: str | None = None) -> list[str]:
        return sorted(obj["metadata"]["name"] for obj in self.list(kind, labels))

    def patch(self, kind: str, name: str, body: dict[str, Any], sub: str | None = None) -> dict[str, Any]:
        response = self.http.patch(self.path(kind, name, sub), json=body,
                                   headers={"Content-Type": "application/merge-patch+json"})
        return response.raise_for_status().json()

    def delete(self, kind: str, name: str) -> None:
        self.http.request("DELETE", self.path(kind, name), json={"propagationPolicy": "Background"})

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return (self.get(kind, name) or {}).get("status") or {}

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(kind, name).get("conditions", []) if c["type"] == type_), {})

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.list("Event") if e["involvedObject"]["name"] == name]

    def wait(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = 20.0) -> dict[str, Any]:
        self.wait(lambda: self.status(kind, name).get("phase") == phase, timeout,
                  f"{kind} {name} phase {phase} (now {self.status(kind, name).get('phase')}: "
                  f"{self.status(kind, name).get('conditions')})")
        return self.status(kind, name)

    # ------------------------------------------------------------- Job controller + kubelet
    def pods_of(self, job: str) -> list[dict[str, Any]]:
        return [p for p in self.list("Pod", f"batch.kubernetes.io/job-name={job}")
                if not p["metadata"].get("deletionTimestamp")]

    def spawn_pods(self, job_name: str, indexes: list[int] | None = None) -> list[dict[str, Any]]:
        """What the Job controller does for an unsuspended Indexed Job: one pod per pending index."""
        job = self.get("Job", job_name)
        assert job is not None, f"Job {job_name} does not exist"
        spec = job["spec"]
        if indexes is None:
            indexes = list(range(min(spec.get("parallelism", 1), spec["completions"])))
        template = spec["template"]
        pods = []
        for index in indexes:
            labels = {**template["metadata"].get("labels", {}), "batch.kubernetes.io/job-name": job_name,
                      "batch.kubernetes.io/job-completion-index": str(index)}
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": f"{job_name}-{index}-{uuid.uuid4().hex[:5]}", "labels": labels,
                    "annotations": {**template["metadata"].get("annotations", {}),
                                    "batch.kubernetes.io/job-completion-index": str(index)},
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                         "uid": job["metadata"]["uid"], "controller": True}],
                },
                "spec": template["spec"],
            }
            pods.append(self.create(pod))
        self.sync_job(job_name)
        return pods

    def set_pod(self, pod: dict[str, Any] | str, phase: str, exit_code: int | None = None,
                disruption: str | None = None) -> None:
        """What the kubelet reports: phase, a terminated container state when it exited, and the
        ``DisruptionTarget`` condition the scheduler/eviction API sets (``disruption`` is its reason)."""
        name = pod if isinstance(pod, str) else pod["metadata"]["name"]
        status: dict[str, Any] = {"phase": phase}
        if disruption is not None:
            status["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": disruption,
                                     "lastTransitionTime": now()}]
        if phase == "Running":
            status["containerStatuses"] = [{"name": "workload", "ready": True, "restartCount": 0, "image": "x",
                                            "imageID": "", "state": {"running": {"startedAt": now()}}}]
        if exit_code is not None:
            status["containerStatuses"] = [{"name": "workload", "ready": False, "restartCount": 0, "image": "x",
                                            "imageID": "", "state": {"terminated": {
                                                "exitCode": exit_code,
                                                "reason": "Completed" if exit_code == 0 else "Error"}}}]
        self.patch("Pod", name, {"status": status}, sub="status")

    def run_all(self, job_name: str) -> list[dict[str, Any]]:
        pods = self.pods_of(job_name)
        for pod in pods:
            self.set_pod(pod, "Running")
        self.sync_job(job_name)
        return pods

    def sync_job(self, job_name: str) -> dict[str, Any]:
        """The Job controller's status update: counts, completedIndexes, Complete/Failed conditions."""
        job = self.get("Job", job_name)
        assert job is not None
        pods = self.pods_of(job_name)
        phases = [p.get("status", {}).get("phase", "Pending") for p in pods]
        succeeded_idx = sorted({int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
                                for p in pods if p.get("status", {}).get("phase") == "Succeeded"})
        failed = phases.count("Failed")
        status: dict[str, Any] = {
            "active": sum(ph in ("Pending", "Running") for ph in phases),
            "succeeded": len(succeeded_idx), "failed": failed,
            "startTime": job.get("status", {}).get("startTime") or now(),
        }
        if succeeded_idx:
            status["completedIndexes"] = ",".join(map(str, succeeded_idx))
        spec = job["spec"]
        conditions = []
        if len(succeeded_idx) >= spec["completions"]:
            conditions = [{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now()},
                          {"type": "Complete", "status": "True", "lastTransitionTime": now()}]
            status["completionTime"] = now()
            status["active"] = 0
        elif "backoffLimit" in spec and failed > spec["backoffLimit"]:
            conditions = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                           "lastTransitionTime": now()},
                          {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                           "lastTransitionTime": now()}]
        if conditions:
            status["conditions"] = conditions
        self.patch("Job", job_name, {"status": status}, sub="status")
        return status

    def fail_job(self, job_name: str, reason: str) -> None:
        self.patch("Job", job_name, {"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": now()}]}}, sub="status")

    def finish_all(self, job_name: str) -> None:
        for pod in self.pods_of(job_name):
            self.set_pod(pod, "Succeeded", exit_code=0)
        self.sync_job(job_name)

    # ------------------------------------------------------------- Deployment controller
    def set_deployment(self, name: str, ready: int) -> None:
        deployment = self.get("Deployment", name)
        assert deployment is not None
        replicas = deployment["spec"]["replicas"]
        self.patch("Deployment", name, {"status": {
            "replicas": replicas, "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": replicas,
            "observedGeneration": deployment["metadata"].get("generation", 1)}}, sub="status")


def start_emulator() -> EmulatorThread:
    k8s = EmulatorThread(crds=build_crds(), bookmark_interval=2.0)
    k8s.emulator.request_history = 50  # kmock scans its request log on every request: keep it short
    return k8s.start()
