"""Pure readers of child state: what a Job, its pods or a Deployment say (no API calls)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


def job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (job.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_ and item.get("status") == "True":
            return item
    return None


def job_finished(job: dict[str, Any]) -> str | None:
    """'Complete', 'Failed' or None. ``FailureTarget``/``SuccessCriteriaMet`` count (the Job is on its way)."""
    if job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"):
        return "Complete"
    if job_condition(job, "Failed") or job_condition(job, "FailureTarget"):
        return "Failed"
    return None


def job_failure_reason(job: dict[str, Any]) -> str:
    found = job_condition(job, "Failed") or job_condition(job, "FailureTarget") or {}
    return found.get("reason") or "JobFailed"


def job_counts(job: dict[str, Any] | None) -> dict[str, int]:
    status = (job or {}).get("status") or {}
    return {key: int(status.get(key) or 0) for key in ("active", "succeeded", "failed")}


def job_suspended(job: dict[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


@dataclass
class PodFailure:
    """The first failed pod of a gang, described for a condition message."""

    pod: str
    exit_code: int | None
    reason: str
    disrupted: bool = False  # preempted, evicted or drained: not the workload's fault

    def describe(self) -> str:
        code = f"exit code {self.exit_code}" if self.exit_code is not None else "no exit code"
        if self.disrupted:
            return f"pod {self.pod} was disrupted ({self.reason}, {code})"
        return f"pod {self.pod} failed ({code}, {self.reason})"


def disruption_reason(pod: dict[str, Any]) -> str | None:
    """Why a pod was disrupted (its ``DisruptionTarget`` condition, or a kubelet eviction), else None.

    The scheduler (preemption), the eviction API (drain), the taint manager and the kubelet
    (node-pressure eviction, reason ``Evicted``) set these; the same signal a Job's
    ``podFailurePolicy`` ``Ignore`` rule matches.
    """
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return cond.get("reason") or "DisruptionTarget"
    if status.get("reason") == "Evicted":
        return "Evicted"
    return None


def failed_pod(pods: list[dict[str, Any]]) -> PodFailure | None:
    """A pod of the gang that failed: phase Failed, or a container already terminated non-zero.

    Looking at pods (not waiting for the Job's Failed condition) catches a broken gang as
    soon as the kubelet reports it. When a pod of a broken gang is being disrupted (preempted,
    evicted, drained), the failure is that disruption: its peers die of lost collectives, and
    those exits are not the workload's fault either.
    """
    failure: PodFailure | None = None
    disruption: PodFailure | None = None
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        status = pod.get("status") or {}
        terminated = [
            (cs.get("state") or {}).get("terminated") or {}
            for cs in status.get("containerStatuses") or []
        ]
        bad = next((t for t in terminated if t and int(t.get("exitCode") or 0) != 0), None)
        code = None if bad is None else int(bad.get("exitCode"))
        disrupted = disruption_reason(pod)
        if disrupted is not None and disruption is None:
            disruption = PodFailure(pod["metadata"]["name"], code, disrupted, disrupted=True)
        if failure is None and (status.get("phase") == "Failed" or bad is not None):
            reason = (bad or {}).get("reason") or status.get("reason") or "Failed"
            failure = PodFailure(pod["metadata"]["name"], code, reason)
    if failure is None:
        return None  # a pod marked for disruption but still running: wait until the gang breaks
    return disruption or failure


def sandbox_unavailable(pods: list[dict[str, Any]], exit_code: int) -> str | None:
    """'pod X: <message>' for a sandbox container that exited with ``exit_code`` (it cannot isolate runs)."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                terminated = state.get("terminated") or {}
                if terminated and int(terminated.get("exitCode") or 0) == exit_code:
                    message = (terminated.get("message") or "").strip() or f"exit code {exit_code}"
                    return f"pod {pod['metadata']['name']}: {message}"
    return None


def running_pods(pods: list[dict[str, Any]]) -> int:
    return sum(1 for pod in pods if (pod.get("status") or {}).get("phase") == "Running")


def deployment_counts(deployment: dict[str, Any] | None) -> tuple[int, int]:
    """(replicas, readyReplicas) as the Deployment controller reports them."""
    status = (deployment or {}).get("status") or {}
    return int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0)


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def unready_since(pod: dict[str, Any]) -> datetime | None:
    """When a Running pod's Ready condition last turned False (None if ready, not running, or unknown)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "True" or not ready.get("lastTransitionTime"):
        return None
    return datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00"))
