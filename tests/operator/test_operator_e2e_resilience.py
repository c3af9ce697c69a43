"""E2E: invalid resources, progress reported by a workload."""

from __future__ import annotations

from operator_factories import document

from codekiln.workloads.progress import KubernetesStatusSink, ProgressReporter


def test_schema_invalid_resource_is_rejected_with_the_field(cluster):
    bad = document("PretrainRun", "bad", nodes=0)
    response = cluster.try_create(bad)
    assert response.status_code == 422
    assert "spec.nodes" in response.text


def test_semantically_invalid_resource_gets_a_condition_naming_the_field(cluster):
    # passes the CRD schema (env names are free strings there) but not codekiln's validation
    cluster.create(document("PretrainRun", "bad", env=[{"name": "MASTER_ADDR", "value": "evil"}]))
    cluster.wait_phase("PretrainRun", "bad", "Failed")
    failed = cluster.condition("PretrainRun", "bad", "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.env[0].name" in failed["message"]
    assert "MASTER_ADDR" in failed["message"] and cluster.list("Job") == []
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in cluster.events("bad"))
    # fixing the spec lets it start (InvalidSpec is not a sticky terminal state)
    cluster.patch("PretrainRun", "bad", {"spec": {"env": [{"name": "HF_HOME", "value": "/hf"}]}})
    cluster.wait(lambda: cluster.get("Job", "bad-r0"), what="gang after the fix")
    assert cluster.condition("PretrainRun", "bad", "Failed")["status"] == "False"


def test_workload_progress_reaches_status(cluster, tmp_path):
    cluster.create(document("PretrainRun", "run", nodes=1))
    job = cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    token = tmp_path / "token"
    token.write_text("t")
    sink = KubernetesStatusSink.from_env({**env, "RANK": "0", "CODEKILN_KUBE_API_URL": cluster.k8s.url,
                                          "CODEKILN_KUBE_TOKEN_FILE": str(token),
                                          "CODEKILN_PROGRESS_INTERVAL_S": "0.1"})
    reporter = ProgressReporter(sink=sink, min_interval_s=0)
    reporter.update(step=40, total_steps=100, loss=1.25, tokens=40960, throughput=2048.0,
                    throughput_unit="tokens/s", stage="s1")
    sink.close()
    progress = cluster.wait(lambda: cluster.status("PretrainRun", "run").get("progress"), what="progress")
    assert progress["step"] == 40 and progress["percent"] == 40.0 and progress["loss"] == 1.25
    assert progress["stage"] == "s1" and progress["etaSeconds"] >= 0
    cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")
    assert cluster.status("PretrainRun", "run")["progress"]["step"] == 40  # the operator kept it


def test_spec_change_reaches_the_next_attempt_but_not_the_running_gang(cluster):
    cluster.create(document("PretrainRun", "run", nodes=1))
    job = cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    cluster.patch("PretrainRun", "run", {"spec": {"training": {"stages": [
        {"name": "s1", "steps": 20, "lr": 1e-4, "seqLen": 256}]}}})
    generation = cluster.get("PretrainRun", "run")["metadata"]["generation"]
    assert generation == 2
    cluster.wait(lambda: cluster.status("PretrainRun", "run").get("observedGeneration") == generation,
                 what="observedGeneration follows the spec")
    running = cluster.get("Job", "run-r0")
    assert running["metadata"]["uid"] == job["metadata"]["uid"]
    assert '"seqLen": 256' not in running["spec"]["template"]["metadata"]["annotations"]["codekiln.dev/resource"]
    (pod,) = cluster.spawn_pods("run-r0")
    cluster.set_pod(pod, "Failed", exit_code=1)
    retry = cluster.wait(lambda: cluster.get("Job", "run-r1"), what="next gang attempt")
    assert '"seqLen": 256' in retry["spec"]["template"]["metadata"]["annotations"]["codekiln.dev/resource"]


def test_foreign_object_with_a_child_name_is_not_adopted(cluster):
    cluster.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "run-gang"},
                    "spec": {"clusterIP": "None", "ports": [{"port": 1}], "selector": {"owner": "someone-else"}}})
    cluster.create(document("PretrainRun", "run", nodes=1))
    cluster.wait(lambda: cluster.condition("PretrainRun", "run", "Created").get("reason") == "ChildConflict",
                 what="ChildConflict condition")
    assert "Service run-gang already exists" in cluster.condition("PretrainRun", "run", "Created")["message"]
    assert cluster.get("Service", "run-gang")["spec"]["selector"] == {"owner": "someone-else"}
    assert cluster.get("Job", "run-r0") is None and cluster.status("PretrainRun", "run")["phase"] == "Pending"
