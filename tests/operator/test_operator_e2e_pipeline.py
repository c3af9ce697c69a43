"""E2E: DataPipeline stages in order, shard retries, per-stage progress, stage failure."""

from __future__ import annotations

from operator_factories import document


def test_stages_run_in_order_with_per_shard_progress(cluster):
    cluster.create(document("DataPipeline", "cur", parallelism=2))
    read = cluster.wait(lambda: cluster.get("Job", "cur-read"), what="stage 1 Job")
    assert read["spec"]["completions"] == 4 and read["spec"]["parallelism"] == 2
    assert cluster.get("Job", "cur-dedup") is None  # stage 2 waits for stage 1
    cluster.wait_phase("DataPipeline", "cur", "Running")

    pods = cluster.spawn_pods("cur-read", [0, 1])
    cluster.run_all("cur-read")
    cluster.set_pod(pods[0], "Succeeded", exit_code=0)
    # shard 1 fails once; the Job controller retries that index alone (backoffLimitPerIndex)
    cluster.set_pod(pods[1], "Failed", exit_code=1)
    cluster.sync_job("cur-read")
    cluster.wait(lambda: cluster.status("DataPipeline", "cur").get("stages", [{}])[0].get("failed") == 1,
                 what="failed shard counted")
    status = cluster.status("DataPipeline", "cur")
    assert status["phase"] == "Running" and status["currentStage"] == "read"
    assert status["stages"][0]["succeeded"] == 1 and status["stages"][0]["shards"] == 4
    assert status["stages"][1]["phase"] == "Pending"
    assert status["progress"]["step"] == 1 and status["progress"]["totalSteps"] == 6

    retry = cluster.spawn_pods("cur-read", [1, 2, 3])
    for pod in retry:
        cluster.set_pod(pod, "Succeeded", exit_code=0)
    cluster.sync_job("cur-read")
    dedup = cluster.wait(lambda: cluster.get("Job", "cur-dedup"), what="stage 2 Job")
    assert dedup["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "dedup"
    cluster.wait(lambda: cluster.status("DataPipeline", "cur").get("currentStage") == "dedup", what="stage 2")
    assert cluster.status("DataPipeline", "cur")["stages"][0]["phase"] == "Succeeded"

    cluster.spawn_pods("cur-dedup")
    cluster.finish_all("cur-dedup")
    status = cluster.wait_phase("DataPipeline", "cur", "Succeeded")
    assert status["progress"]["step"] == 6 and status["progress"]["percent"] == 100.0
    assert [s["phase"] for s in status["stages"]] == ["Succeeded", "Succeeded"]
    assert cluster.condition("DataPipeline", "cur", "Complete")["reason"] == "AllStagesSucceeded"


def test_failed_stage_fails_the_pipeline_and_stops(cluster):
    cluster.create(document("DataPipeline", "cur", backoffLimitPerIndex=0))
    cluster.wait(lambda: cluster.get("Job", "cur-read"), what="stage 1 Job")
    cluster.patch("Job", "cur-read", {"status": {"failedIndexes": "2", "conditions": [
        {"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}}, sub="status")
    cluster.wait_phase("DataPipeline", "cur", "Failed")
    failed = cluster.condition("DataPipeline", "cur", "Failed")
    assert failed["reason"] == "StageFailed" and "'read'" in failed["message"] and "2" in failed["message"]
    assert cluster.get("Job", "cur-dedup") is None


def test_suspend_pipeline_suspends_current_stage(cluster):
    cluster.create(document("DataPipeline", "cur"))
    cluster.wait(lambda: cluster.get("Job", "cur-read"), what="stage 1 Job")
    cluster.patch("DataPipeline", "cur", {"spec": {"suspend": True}})
    cluster.wait(lambda: cluster.get("Job", "cur-read")["spec"]["suspend"], what="stage suspended")
    cluster.wait_phase("DataPipeline", "cur", "Suspended")
    cluster.patch("DataPipeline", "cur", {"spec": {"suspend": False}})
    cluster.wait(lambda: not cluster.get("Job", "cur-read")["spec"]["suspend"], what="stage resumed")
    cluster.wait_phase("DataPipeline", "cur", "Running")


def test_pipeline_deadline_then_ttl_cleanup(cluster):
    cluster.create(document("DataPipeline", "cur", activeDeadlineSeconds=1, ttlSecondsAfterFinished=1))
    cluster.wait(lambda: cluster.get("Job", "cur-read"), what="stage 1 Job")
    cluster.wait_phase("DataPipeline", "cur", "Failed", timeout=10)
    assert cluster.condition("DataPipeline", "cur", "Failed")["reason"] == "DeadlineExceeded"
    cluster.wait(lambda: not cluster.list("Job", "codekiln.dev/name=cur") and not cluster.list("ConfigMap"),
                 what="children deleted after TTL")
    assert cluster.status("DataPipeline", "cur")["phase"] == "Failed"
    assert cluster.get("Job", "cur-dedup") is None
