"""E2E: RLRun waits for its SandboxPool, then runs wired to the pool's Service URL."""

from __future__ import annotations

from operator_factories import document


def test_missing_pool_then_unready_pool_then_running(cluster):
    cluster.create(document("RLRun", "rl", nodes=2, sandboxPoolRef={"name": "pool"}))
    cluster.wait(lambda: cluster.condition("RLRun", "rl", "SandboxPoolReady").get("reason") == "SandboxPoolNotFound",
                 what="SandboxPoolNotFound")
    assert "'pool' does not exist" in cluster.condition("RLRun", "rl", "SandboxPoolReady")["message"]
    assert cluster.status("RLRun", "rl")["phase"] == "Pending" and cluster.get("Job", "rl-r0") is None

    cluster.create(document("SandboxPool", "pool", replicas=1, sandbox={"port": 9000}))
    cluster.wait(lambda: cluster.condition("RLRun", "rl", "SandboxPoolReady").get("reason") == "SandboxPoolNotReady",
                 what="SandboxPoolNotReady")
    assert cluster.get("Job", "rl-r0") is None

    cluster.wait(lambda: cluster.get("Deployment", "pool"), what="pool Deployment")
    cluster.set_deployment("pool", ready=1)
    job = cluster.wait(lambda: cluster.get("Job", "rl-r0"), what="RL gang Job")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    url = f"http://pool.{cluster.ns}.svc:9000"
    assert env["CODEKILN_SANDBOX_URL"] == url
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:3] == ["torchrun", "-m",
                                                                               "codekiln.workloads.rl"]
    assert cluster.condition("RLRun", "rl", "SandboxPoolReady")["status"] == "True"
    cluster.spawn_pods("rl-r0")
    cluster.run_all("rl-r0")
    status = cluster.wait_phase("RLRun", "rl", "Running")
    assert status["sandboxUrl"] == url
    cluster.finish_all("rl-r0")
    cluster.wait_phase("RLRun", "rl", "Succeeded")
