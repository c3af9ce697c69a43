"""E2E: PretrainRun gangs — children, torchrun wiring, failures, restarts, suspend, deadline, TTL, delete."""

from __future__ import annotations

import time

from operator_factories import document

from codekiln.operator import metrics

SELECTOR = "codekiln.dev/name=run"


def _env(job):
    return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_create_children_run_and_complete(cluster):
    cluster.create(document("PretrainRun", "run", nodes=2))
    job = cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    assert cluster.names("Service") == ["run-gang"]
    assert cluster.names("ConfigMap") == []  # pods read resource.json from their template (downward API)
    assert '"name": "run"' in job["spec"]["template"]["metadata"]["annotations"]["codekiln.dev/resource"]
    assert cluster.names("Role") == ["run-progress"] and cluster.names("RoleBinding") == ["run-progress"]
    assert cluster.names("ServiceAccount") == ["run-workload"]
    run = cluster.get("PretrainRun", "run")
    for kind in ("Job", "Service", "Role", "RoleBinding", "ServiceAccount"):
        for child in cluster.list(kind, SELECTOR):
            assert child["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert _env(job)["PET_MASTER_ADDR"] == "run-r0-0.run-gang" and _env(job)["PET_NNODES"] == "2"
    assert cluster.wait_phase("PretrainRun", "run", "Pending")["restarts"] == 0
    assert cluster.condition("PretrainRun", "run", "Created")["reason"] == "GangCreated"

    cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    status = cluster.wait_phase("PretrainRun", "run", "Running")
    assert status["active"] == 2 and status["startTime"]
    assert cluster.condition("PretrainRun", "run", "Running")["reason"] == "GangRunning"

    cluster.finish_all("run-r0")
    status = cluster.wait_phase("PretrainRun", "run", "Succeeded")
    assert status["completionTime"] and status["succeeded"] == 2
    assert cluster.condition("PretrainRun", "run", "Complete")["status"] == "True"
    assert cluster.condition("PretrainRun", "run", "Running")["status"] == "False"
    reasons = {e["reason"] for e in cluster.events("run")}
    assert {"GangCreated", "GangRunning", "GangSucceeded"} <= reasons
    meta = cluster.get("PretrainRun", "run")["metadata"]
    assert not meta.get("finalizers")  # nothing to clean up that ownerReferences do not cover
    assert not any("kopf" in key or key.startswith("codekiln.dev/") for key in meta.get("annotations") or {})


def test_pod_failure_recreates_the_whole_gang_then_completes(cluster):
    restarts_before = metrics.sample("codekiln_operator_gang_restarts_total", kind="PretrainRun", cause="failure")
    cluster.create(document("PretrainRun", "run", nodes=3, maxRestarts=2))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    pods = cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")
    # one rank dies; the Job itself is NOT marked failed: the pod event alone must trigger the restart
    cluster.set_pod(pods[1], "Failed", exit_code=1)
    cluster.wait(lambda: cluster.get("Job", "run-r1"), what="attempt 1 Job")
    status = cluster.status("PretrainRun", "run")
    assert status["restarts"] == 1 and status["phase"] == "Restarting"
    restarting = cluster.condition("PretrainRun", "run", "Restarting")
    assert restarting["status"] == "True" and pods[1]["metadata"]["name"] in restarting["message"]
    cluster.wait(lambda: cluster.get("Job", "run-r0") is None, what="attempt 0 deleted")
    assert _env(cluster.get("Job", "run-r1"))["PET_MASTER_ADDR"] == "run-r1-0.run-gang"
    assert cluster.names("Job", SELECTOR) == ["run-r1"]

    cluster.spawn_pods("run-r1")
    cluster.run_all("run-r1")
    cluster.wait_phase("PretrainRun", "run", "Running")
    assert cluster.condition("PretrainRun", "run", "Restarting")["status"] == "False"
    cluster.finish_all("run-r1")
    status = cluster.wait_phase("PretrainRun", "run", "Succeeded")
    assert status["restarts"] == 1
    assert any(e["reason"] == "GangPodFailed" and e["type"] == "Warning" for e in cluster.events("run"))
    assert metrics.sample("codekiln_operator_gang_restarts_total", kind="PretrainRun",
                          cause="failure") == restarts_before + 1


def test_max_restarts_exhausted_fails_and_stays_failed(cluster):
    cluster.create(document("PretrainRun", "run", nodes=2, maxRestarts=1, ttlSecondsAfterFinished=1))
    for attempt in (0, 1):
        job = f"run-r{attempt}"
        cluster.wait(lambda job=job: cluster.get("Job", job), what=job)
        pods = cluster.spawn_pods(job)
        cluster.set_pod(pods[0], "Failed", exit_code=137)
    status = cluster.wait_phase("PretrainRun", "run", "Failed")
    failed = cluster.condition("PretrainRun", "run", "Failed")
    assert failed["reason"] == "MaxRestartsExceeded" and "maxRestarts 1" in failed["message"]
    assert status["restarts"] == 1
    # TTL removes the children; the finished run never recreates them nor resets its budget
    cluster.wait(lambda: not cluster.list("Job", SELECTOR) and not cluster.list("Service", SELECTOR),
                 what="children deleted after TTL")
    time.sleep(1.5)
    assert cluster.list("Job", SELECTOR) == [] and cluster.list("ConfigMap", SELECTOR) == []
    final = cluster.status("PretrainRun", "run")
    assert final["phase"] == "Failed" and final["restarts"] == 1
    assert cluster.condition("PretrainRun", "run", "ChildrenDeleted")["reason"] == "TTLExpired"


def test_job_failure_condition_alone_also_restarts(cluster):
    cluster.create(document("PretrainRun", "run", nodes=1))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    cluster.fail_job("run-r0", "BackoffLimitExceeded")
    cluster.wait(lambda: cluster.get("Job", "run-r1"), what="attempt 1 Job")
    assert cluster.status("PretrainRun", "run")["restarts"] == 1


def test_exit_code_2_is_not_retried(cluster):
    cluster.create(document("PretrainRun", "run", nodes=2, maxRestarts=5))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    pods = cluster.spawn_pods("run-r0")
    cluster.set_pod(pods[0], "Failed", exit_code=2)
    cluster.wait_phase("PretrainRun", "run", "Failed")
    assert cluster.condition("PretrainRun", "run", "Failed")["reason"] == "NonRetriableExitCode"
    assert cluster.get("Job", "run-r0")["spec"]["suspend"] is True  # remaining pods stopped, logs kept
    assert cluster.get("Job", "run-r1") is None


def test_suspend_and_resume(cluster):
    cluster.create(document("PretrainRun", "run", nodes=2))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")
    cluster.patch("PretrainRun", "run", {"spec": {"suspend": True}})
    cluster.wait(lambda: cluster.get("Job", "run-r0")["spec"]["suspend"] is True, what="Job suspended")
    cluster.wait_phase("PretrainRun", "run", "Suspended")
    assert cluster.condition("PretrainRun", "run", "Suspended")["status"] == "True"
    cluster.patch("PretrainRun", "run", {"spec": {"suspend": False}})
    cluster.wait(lambda: cluster.get("Job", "run-r0")["spec"]["suspend"] is False, what="Job resumed")
    cluster.wait(lambda: cluster.condition("PretrainRun", "run", "Suspended").get("reason") == "Resumed",
                 what="Resumed condition")
    assert cluster.status("PretrainRun", "run")["restarts"] == 0  # suspension is not a failure
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")


def test_kueue_queue_label_and_waiting_for_admission(cluster):
    cluster.create(document("PretrainRun", "run", scheduling={"queueName": "team-a"}))
    job = cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and job["spec"]["suspend"]
    cluster.wait(lambda: cluster.condition("PretrainRun", "run", "Running").get("reason") == "WaitingForAdmission",
                 what="WaitingForAdmission")
    cluster.patch("Job", "run-r0", {"spec": {"suspend": False}})  # Kueue admits the workload
    cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")


def test_active_deadline_fails_with_deadline_exceeded(cluster):
    cluster.create(document("PretrainRun", "run", nodes=1, activeDeadlineSeconds=2))
    job = cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    assert 1 <= job["spec"]["activeDeadlineSeconds"] <= 2
    cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Failed", timeout=10)
    assert cluster.condition("PretrainRun", "run", "Failed")["reason"] == "DeadlineExceeded"
    assert cluster.get("Job", "run-r0")["spec"]["suspend"] is True
    assert cluster.status("PretrainRun", "run")["restarts"] == 0


def test_delete_garbage_collects_children(cluster):
    cluster.create(document("PretrainRun", "run", nodes=2))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    cluster.spawn_pods("run-r0")
    uid = cluster.get("PretrainRun", "run")["metadata"]["uid"]
    cluster.delete("PretrainRun", "run")
    cluster.wait(lambda: cluster.get("PretrainRun", "run") is None, what="run deleted")
    for kind in ("Job", "Service", "ConfigMap", "Role", "RoleBinding", "ServiceAccount", "Pod"):
        try:
            cluster.wait(lambda kind=kind: not cluster.list(kind, SELECTOR), what=f"{kind} garbage-collected")
        except AssertionError:
            left = [(o["metadata"]["name"], o["metadata"].get("ownerReferences")) for o in cluster.list(kind, SELECTOR)]
            raise AssertionError(f"{kind} left: {left}; run uid {uid}") from None
    assert cluster.get("PretrainRun", "run") is None


def test_volcano_gang_scheduling_creates_a_pod_group_per_attempt(cluster):
    cluster.k8s.call(cluster.k8s.emulator.register_resource, "scheduling.volcano.sh/v1beta1/podgroups",
                     kind="PodGroup")
    cluster.create(document("PretrainRun", "run", nodes=4, scheduling={"gangScheduling": True}))
    job = cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    group = cluster.get("PodGroup", "run-r0")
    assert group["spec"]["minMember"] == 4
    assert group["metadata"]["ownerReferences"][0]["kind"] == "PretrainRun"
    template = job["spec"]["template"]
    assert template["spec"]["schedulerName"] == "volcano"
    assert template["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "run-r0"


def test_preemption_recreates_the_gang_without_spending_the_restart_budget(cluster):
    before = metrics.sample("codekiln_operator_gang_restarts_total", kind="PretrainRun", cause="disruption")
    cluster.create(document("PretrainRun", "run", nodes=2, maxRestarts=1))
    for attempt in (0, 1, 2):  # three preemptions with a budget of one restart: all recreated
        job = f"run-r{attempt}"
        cluster.wait(lambda job=job: cluster.get("Job", job), what=job)
        pods = cluster.spawn_pods(job)
        cluster.run_all(job)
        # the preempted rank is still terminating while its peer already died of the lost collective
        cluster.set_pod(pods[0], "Running", disruption="PreemptionByScheduler")
        cluster.set_pod(pods[1], "Failed", exit_code=1)
    cluster.wait(lambda: cluster.get("Job", "run-r3"), what="attempt 3 Job")
    status = cluster.status("PretrainRun", "run")
    assert status["disruptions"] == 3 and status["restarts"] == 0 and status["phase"] == "Restarting"
    restarting = cluster.condition("PretrainRun", "run", "Restarting")
    assert restarting["reason"] == "GangDisrupted" and "PreemptionByScheduler" in restarting["message"]
    assert "not counted against maxRestarts" in restarting["message"]
    assert metrics.sample("codekiln_operator_gang_restarts_total", kind="PretrainRun",
                          cause="disruption") == before + 3

    # a real failure still spends the budget, and the second one exhausts it
    for attempt, phase in ((3, "Restarting"), (4, "Failed")):
        job = f"run-r{attempt}"
        cluster.wait(lambda job=job: cluster.get("Job", job), what=job)
        pods = cluster.spawn_pods(job)
        cluster.set_pod(pods[0], "Failed", exit_code=137)
        if phase == "Restarting":
            cluster.wait(lambda: cluster.get("Job", "run-r4"), what="attempt 4 Job")
    status = cluster.wait_phase("PretrainRun", "run", "Failed")
    assert status["restarts"] == 1 and status["disruptions"] == 3
    assert cluster.condition("PretrainRun", "run", "Failed")["reason"] == "MaxRestartsExceeded"


def test_kubelet_eviction_counts_as_a_disruption(cluster):
    cluster.create(document("PretrainRun", "run", nodes=1, maxRestarts=0))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    pods = cluster.spawn_pods("run-r0")
    cluster.patch("Pod", pods[0]["metadata"]["name"], {"status": {"phase": "Failed", "reason": "Evicted"}},
                  sub="status")
    cluster.wait(lambda: cluster.get("Job", "run-r1"), what="attempt 1 Job")
    status = cluster.status("PretrainRun", "run")
    assert status["disruptions"] == 1 and status["restarts"] == 0
