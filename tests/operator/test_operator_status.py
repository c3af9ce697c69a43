"""Status drafts, conditions and the pure child-state readers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from codekiln.operator.reconcile import lifecycle, observe
from codekiln.operator.status import StatusDraft, find_condition, now_iso


def test_condition_transition_time_moves_only_on_flip():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    draft = StatusDraft({}, generation=3, now=t0)
    draft.condition("Running", True, "GangRunning", "2/2")
    first = dict(find_condition(draft.new, "Running"))
    assert first == {"type": "Running", "status": "True", "reason": "GangRunning", "message": "2/2",
                     "lastTransitionTime": now_iso(t0), "observedGeneration": 3}
    later = StatusDraft(draft.new, generation=4, now=t0 + timedelta(minutes=5))
    later.condition("Running", True, "GangRunning", "2/2 still")
    assert find_condition(later.new, "Running")["lastTransitionTime"] == now_iso(t0)
    assert later.transitions == []  # same status and reason: no Event
    later.condition("Running", False, "GangPodFailed", "pod x failed")
    assert find_condition(later.new, "Running")["lastTransitionTime"] == now_iso(t0 + timedelta(minutes=5))
    assert [(t.type, t.status, t.reason) for t in later.transitions] == [("Running", "False", "GangPodFailed")]
    assert later.new["observedGeneration"] == 4


def test_changes_hold_only_changed_fields_and_warning_events():
    draft = StatusDraft({"phase": "Running", "progress": {"step": 5}, "restarts": 0}, generation=1)
    draft.set(phase="Restarting", restarts=1)
    draft.condition("Restarting", True, "GangPodFailed", "pod failed")
    changes = draft.changes()
    assert set(changes) == {"phase", "restarts", "conditions", "observedGeneration"}
    assert "progress" not in changes  # progress belongs to the workload: never overwritten
    assert draft.transitions[0].event_type == "Warning"
    draft.mark_written()
    assert draft.changes() == {} and draft.transitions == []


def test_new_false_condition_is_not_announced_and_clear_skips_missing():
    draft = StatusDraft({}, generation=1)
    draft.condition("Ready", False, "ReplicasNotReady", "0/2")
    draft.clear("Suspended", "Resumed")
    assert draft.transitions == [] and find_condition(draft.new, "Suspended") is None


def test_invalid_spec_failure_is_not_terminal():
    assert lifecycle.is_terminal({"phase": "Succeeded"})
    assert lifecycle.is_terminal({"phase": "Failed", "conditions": [
        {"type": "Failed", "status": "True", "reason": "MaxRestartsExceeded"}]})
    assert not lifecycle.is_terminal({"phase": "Failed", "conditions": [
        {"type": "Failed", "status": "True", "reason": "InvalidSpec"}]})
    assert not lifecycle.is_terminal({"phase": "Running"})


def _pod(name, phase, exit_code=None):
    status = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": exit_code, "reason": "Error"}}}]
    return {"metadata": {"name": name}, "status": status}


def test_failed_pod_is_seen_before_the_job_fails():
    assert observe.failed_pod([_pod("a-0", "Running"), _pod("a-1", "Running")]) is None
    # container exited non-zero while the pod phase is still Running: already a failure
    failure = observe.failed_pod([_pod("a-0", "Running"), _pod("a-1", "Running", exit_code=137)])
    assert failure.pod == "a-1" and failure.exit_code == 137
    assert "exit code 137" in failure.describe()
    failure = observe.failed_pod([_pod("a-0", "Failed")])
    assert failure.exit_code is None and failure.reason == "Failed"
    assert observe.failed_pod([_pod("a-0", "Succeeded", exit_code=0)]) is None


def test_job_outcomes():
    def job(*conditions):
        return {"status": {"conditions": [{"type": t, "status": "True", "reason": r} for t, r in conditions]}}

    assert observe.job_finished(job()) is None
    assert observe.job_finished(job(("Complete", ""))) == "Complete"
    assert observe.job_finished(job(("SuccessCriteriaMet", ""))) == "Complete"
    assert observe.job_finished(job(("FailureTarget", "BackoffLimitExceeded"))) == "Failed"
    assert observe.job_failure_reason(job(("Failed", "DeadlineExceeded"))) == "DeadlineExceeded"
    assert observe.job_counts({"status": {"active": 2, "failed": 1}}) == {"active": 2, "succeeded": 0, "failed": 1}
    assert observe.job_counts(None) == {"active": 0, "succeeded": 0, "failed": 0}


def _disrupted(pod, reason="PreemptionByScheduler"):
    pod["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": reason}]
    return pod


def test_disruption_is_told_apart_from_a_workload_failure():
    # marked for preemption but nothing broke yet: no failure
    assert observe.failed_pod([_disrupted(_pod("a-0", "Running")), _pod("a-1", "Running")]) is None
    # a peer died of the lost collective: the gang's failure is the disruption
    failure = observe.failed_pod([_disrupted(_pod("a-0", "Running")), _pod("a-1", "Failed", exit_code=1)])
    assert failure.disrupted and failure.pod == "a-0" and failure.reason == "PreemptionByScheduler"
    assert "disrupted" in failure.describe()
    # kubelet node-pressure eviction
    evicted = {"metadata": {"name": "a-0"}, "status": {"phase": "Failed", "reason": "Evicted"}}
    assert observe.failed_pod([evicted]).disrupted
    # a condition that is not True is not a disruption
    pod = _pod("a-0", "Failed", exit_code=137)
    pod["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "False"}]
    assert not observe.failed_pod([pod]).disrupted


def test_sandbox_unavailable_comes_from_the_exit_code_and_termination_message():
    crashed = {"metadata": {"name": "p-1"}, "status": {"containerStatuses": [{
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 3, "message": "sandbox self-check failed: no userns\n"}}}]}}
    assert observe.sandbox_unavailable([crashed], 3) == "pod p-1: sandbox self-check failed: no userns"
    oom = {"metadata": {"name": "p-2"}, "status": {"containerStatuses": [{
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}
    assert observe.sandbox_unavailable([oom, {"metadata": {"name": "p-3"}, "status": {}}], 3) is None
    silent = {"metadata": {"name": "p-4"},
              "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}}
    assert observe.sandbox_unavailable([silent], 3) == "pod p-4: exit code 3"
