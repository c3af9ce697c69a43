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
    cluster.wait_phase("DataPipeline", "cur", "Failed")
    assert cluster.condition("DataPipeline", "cur", "Failed")["reason"] == "DeadlineExceeded"
    cluster.wait(lambda: not cluster.list("Job", "codekiln.dev/name=cur") and not cluster.list("ConfigMap"),
                 what="children deleted after TTL")
    assert cluster.status("DataPipeline", "cur")["phase"] == "Failed"
    assert cluster.get("Job", "cur-dedup") is None


def test_spec_after_chains_runs(cluster):
    # applied together (GitOps): the PretrainRun waits for its DataPipeline, the RLRun for the PretrainRun
    cluster.create(document("PretrainRun", "train", nodes=1, after=[{"kind": "DataPipeline", "name": "data"}]))
    cluster.create(document("RLRun", "rl", nodes=1, sandboxPoolRef=None,
                            after=[{"kind": "PretrainRun", "name": "train"}]))
    waiting = cluster.wait(lambda: cluster.condition("PretrainRun", "train", "DependenciesReady"), what="waiting")
    assert waiting["reason"] == "WaitingForDependencies" and "DataPipeline 'data' (not found)" in waiting["message"]
    cluster.create(document("DataPipeline", "data", parallelism=4))
    cluster.wait(lambda: cluster.get("Job", "data-read"), what="stage 1 Job")
    cluster.wait(lambda: "(Running)" in cluster.condition("PretrainRun", "train", "DependenciesReady")["message"]
                 or "(Pending)" in cluster.condition("PretrainRun", "train", "DependenciesReady")["message"],
                 what="dependency seen")
    assert cluster.get("Job", "train-r0") is None and cluster.status("PretrainRun", "train")["phase"] == "Pending"
    assert "startTime" not in cluster.status("PretrainRun", "train")  # the deadline clock has not started
    for job in ("data-read", "data-dedup"):
        cluster.wait(lambda job=job: cluster.get("Job", job), what=job)
        cluster.spawn_pods(job)
        cluster.finish_all(job)
    cluster.wait_phase("DataPipeline", "data", "Succeeded")
    # the pipeline's status change re-triggers the waiting run at once (no 30 s poll needed)
    cluster.wait(lambda: cluster.get("Job", "train-r0"), what="PretrainRun gang after its pipeline")
    # the Job is created before the pass writes status: wait for the write
    cluster.wait(lambda: cluster.condition("PretrainRun", "train", "DependenciesReady")["status"] == "True",
                 what="DependenciesReady True")
    # kubectl describe shows when the run started and stopped waiting
    reasons = [e["reason"] for e in sorted(cluster.events("train"), key=lambda e: e["lastTimestamp"])]
    assert "WaitingForDependencies" in reasons
    messages = " ".join(e["message"] for e in cluster.events("train"))
    assert "waiting for DataPipeline 'data'" in messages and "every run in spec.after has Succeeded" in messages
    assert cluster.get("Job", "rl-r0") is None
    cluster.spawn_pods("train-r0")
    cluster.run_all("train-r0")
    cluster.finish_all("train-r0")
    cluster.wait_phase("PretrainRun", "train", "Succeeded")
    cluster.wait(lambda: cluster.get("Job", "rl-r0"), what="RLRun gang after its PretrainRun")


def test_failed_dependency_fails_the_waiting_run(cluster):
    cluster.create(document("DataPipeline", "data"))
    cluster.create(document("PretrainRun", "train", after=[{"kind": "DataPipeline", "name": "data"}]))
    cluster.wait(lambda: cluster.get("Job", "data-read"), what="stage 1 Job")
    cluster.fail_job("data-read", "BackoffLimitExceeded")
    cluster.wait_phase("DataPipeline", "data", "Failed")
    cluster.wait_phase("PretrainRun", "train", "Failed")
    failed = cluster.condition("PretrainRun", "train", "Failed")
    assert failed["reason"] == "DependencyFailed" and "DataPipeline 'data' (spec.after) failed" in failed["message"]
    assert cluster.get("Job", "train-r0") is None


def test_a_pretrainrun_incompatible_with_its_pipeline_waits_with_a_condition(cluster):
    # the pipeline packs 64-token sequences; a 48-token stage can be served by neither slicing nor joining them
    packed = {"name": "pack", "input": "read", "steps": [{"pack": {"seqLen": 64}}]}
    cluster.create(document("DataPipeline", "data", pipeline={"stages": [
        {"name": "read", "shards": 1, "steps": [{"readFiles": {"paths": ["/data/src"]}}]}, packed]}))
    cluster.create(document("PretrainRun", "train", after=[{"kind": "DataPipeline", "name": "data"}],
                            training={"stages": [{"name": "s1", "steps": 10, "seqLen": 48}]}))
    blocked = cluster.wait(lambda: (c := cluster.condition("PretrainRun", "train", "DependenciesReady"))
                           and c.get("reason") == "IncompatibleDependency" and c, what="incompatible condition")
    assert "spec.training.stages[0].seqLen: 48 neither divides nor is a multiple of the pack seqLen 64" \
        in blocked["message"]
    assert cluster.status("PretrainRun", "train")["phase"] == "Pending" and cluster.get("Job", "train-r0") is None
    cluster.patch("PretrainRun", "train", {"spec": {"training": {"stages": [
        {"name": "s1", "steps": 10, "seqLen": 128}]}}})  # fixed: two packed sequences per sample
    cluster.wait(lambda: cluster.condition("PretrainRun", "train", "DependenciesReady").get("reason")
                 == "WaitingForDependencies", what="waiting for the pipeline instead")


def test_a_stage_reading_a_later_stage_is_an_invalid_spec_naming_the_field(cluster):
    # the CRD's CEL rule checks that `input` names a stage; the order is codekiln's validation (a condition)
    cluster.create(document("DataPipeline", "order", pipeline={"stages": [
        {"name": "pack", "input": "read", "steps": [{"pack": {"seqLen": 64}}]},
        {"name": "read", "shards": 1, "steps": [{"readFiles": {"paths": ["/data/src"]}}]}]}))
    cluster.wait_phase("DataPipeline", "order", "Failed")
    failed = cluster.condition("DataPipeline", "order", "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.pipeline.stages[0].input: stage 'read' runs later (stages[1])" in failed["message"]
    assert cluster.list("Job") == []
