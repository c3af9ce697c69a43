"""E2E: SandboxPool and RLRun wiring against the emulator with the real operator."""

from __future__ import annotations

from operator_factories import document


def test_sandbox_pool_children_status_and_scaling(cluster):
    cluster.create(document("SandboxPool", "pool", replicas=2, runtimeClassName="gvisor"))
    cluster.wait(lambda: cluster.get("Deployment", "pool"), what="Deployment")
    assert cluster.names("Service") == ["pool"]
    assert cluster.names("NetworkPolicy") == ["pool-deny-egress"]
    assert cluster.names("ConfigMap") == ["pool-config"]
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
    cluster.wait(lambda: cluster.condition("SandboxPool", "pool", "Ready").get("status") == "False",
                 what="Ready False while scaling")
    assert any(e["reason"] == "AllReplicasReady" for e in cluster.events("pool"))
