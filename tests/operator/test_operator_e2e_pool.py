"""E2E: SandboxPool and RLRun wiring against the emulator with the real operator."""

from __future__ import annotations

from datetime import UTC, datetime

from operator_factories import document


def test_sandbox_pool_children_status_and_scaling(cluster):
    cluster.create(document("SandboxPool", "pool", replicas=2, runtimeClassName="gvisor"))
    cluster.wait(lambda: cluster.get("Deployment", "pool"), what="Deployment")
    assert cluster.names("Service") == ["pool"]
    assert cluster.names("NetworkPolicy") == ["pool-deny-egress"]
    assert cluster.names("ConfigMap") == []  # resource.json comes from the pod template's annotation
    status = cluster.wait_phase("SandboxPool", "pool", "Pending")
    assert status["selector"] == "app.kubernetes.io/component=sandbox,app.kubernetes.io/managed-by=codekiln," \
        "codekiln.dev/kind=SandboxPool,codekiln.dev/name=pool"
    assert cluster.condition("SandboxPool", "pool", "Ready")["reason"] == "ReplicasNotReady"

    cluster.set_deployment("pool", ready=2)
    status = cluster.wait_phase("SandboxPool", "pool", "Running")
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    ready = cluster.condition("SandboxPool", "pool", "Ready")
    assert ready["status"] == "True" and ready["reason"] == "AllReplicasReady"
    assert status["observedGeneration"] == cluster.get("SandboxPool", "pool")["metadata"]["generation"]

    # scale through the scale subresource (what an HPA does) → the Deployment follows
    cluster.patch("SandboxPool", "pool", {"spec": {"replicas": 5}}, sub="scale")
    cluster.wait(lambda: cluster.get("Deployment", "pool")["spec"]["replicas"] == 5, what="Deployment scaled")
    # a serving pool stays Ready while it scales (no flapping for an autoscaler or the RLRuns on it);
    # the scaling shows in Progressing and the counts
    progressing = cluster.wait(lambda: cluster.condition("SandboxPool", "pool", "Progressing") or None,
                               what="Progressing while scaling")
    assert progressing["status"] == "True" and progressing["reason"] == "ScalingUp"
    status = cluster.status("SandboxPool", "pool")
    assert status["phase"] == "Running" and cluster.condition("SandboxPool", "pool", "Ready")["status"] == "True"
    assert cluster.condition("SandboxPool", "pool", "Ready")["reason"] == "MinimumReplicasReady"
    cluster.set_deployment("pool", ready=5)
    cluster.wait(lambda: cluster.condition("SandboxPool", "pool", "Progressing").get("status") == "False",
                 what="Progressing False once scaled")
    assert cluster.condition("SandboxPool", "pool", "Ready")["reason"] == "AllReplicasReady"
    assert any(e["reason"] == "AllReplicasReady" for e in cluster.events("pool"))
    # below the minimum (all servers gone) it is not serving
    cluster.set_deployment("pool", ready=0)
    cluster.wait_phase("SandboxPool", "pool", "Pending")
    assert cluster.condition("SandboxPool", "pool", "Ready")["reason"] == "ReplicasNotReady"


def test_sandbox_pod_stuck_unready_is_replaced(cluster):
    cluster.create(document("SandboxPool", "stuck", replicas=2, unreadyReplaceAfterSeconds=60))
    cluster.wait(lambda: cluster.get("Deployment", "stuck"), what="Deployment")
    selector = cluster.get("Deployment", "stuck")["spec"]["selector"]["matchLabels"]
    long_ago, just_now = "2020-01-01T00:00:00Z", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, since in (("stuck-old", long_ago), ("stuck-new", just_now)):
        cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": selector},
                        "spec": {"containers": [{"name": "sandbox", "image": "sandbox"}]}})
        cluster.patch("Pod", name, {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": since}]}}, sub="status")
    cluster.set_deployment("stuck", ready=0)  # a Deployment event: the operator takes a pass
    cluster.wait(lambda: cluster.get("Pod", "stuck-old") is None, what="stuck pod deleted")
    assert cluster.get("Pod", "stuck-new") is not None, "a pod within its grace period is left alone"
    cluster.wait(lambda: cluster.status("SandboxPool", "stuck").get("replacedPods") == 1, what="replacedPods")
    assert any(e["reason"] == "SandboxReplaced" for e in cluster.events("stuck"))


def test_sandbox_that_cannot_isolate_is_reported_not_churned(cluster):
    # the server's self-check failed (e.g. RuntimeDefault seccomp refuses namespaces): it exited with
    # code 3 and wrote the reason to its termination log; the kubelet restarts it (CrashLoopBackOff)
    cluster.create(document("SandboxPool", "noiso", replicas=1, unreadyReplaceAfterSeconds=30))
    cluster.wait(lambda: cluster.get("Deployment", "noiso"), what="Deployment")
    selector = cluster.get("Deployment", "noiso")["spec"]["selector"]["matchLabels"]
    cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noiso-1", "labels": selector},
                    "spec": {"containers": [{"name": "sandbox", "image": "sandbox"}]}})
    reason = "sandbox self-check failed: bwrap: No permissions to create a new namespace"
    cluster.patch("Pod", "noiso-1", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}],
        "containerStatuses": [{"name": "sandbox", "ready": False, "restartCount": 4, "image": "sandbox",
                               "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                               "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "message": reason}}}]}},
        sub="status")
    cluster.set_deployment("noiso", ready=0)
    cluster.wait(lambda: cluster.condition("SandboxPool", "noiso", "Ready").get("reason") == "SandboxUnavailable",
                 what="SandboxUnavailable condition")
    message = cluster.condition("SandboxPool", "noiso", "Ready")["message"]
    assert "pod noiso-1: " + reason in message and "seccompLocalhostProfile" in message
    assert cluster.get("Pod", "noiso-1") is not None  # past the grace period, yet not deleted: it would not help
    # an RLRun on that pool says why it waits, instead of only "waiting for Ready"
    cluster.create(document("RLRun", "rl", nodes=1, sandboxPoolRef={"name": "noiso"}))
    cluster.wait(lambda: cluster.condition("RLRun", "rl", "SandboxPoolReady").get("reason") == "SandboxUnavailable",
                 what="RLRun SandboxUnavailable")
    assert reason in cluster.condition("RLRun", "rl", "SandboxPoolReady")["message"]
    assert cluster.get("Job", "rl-r0") is None
