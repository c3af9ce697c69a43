"""Pure builders: resource → manifests, checked on plain data (no server)."""

from __future__ import annotations

import json

import pytest
from operator_factories import document, resource

from codekiln.operator.builders import common, data, gang, names, sandbox
from codekiln.operator.builders.children import desired_children, render_all
from codekiln.operator.validation import validate_document


def _env(job: dict) -> dict:
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in env}


def test_gang_job_is_one_indexed_job_with_torchrun_env():
    run = resource("PretrainRun", "llm", nodes=4, nprocPerNode=8, masterPort=29600)
    job = gang.build_gang_job(run, 2)
    spec = job["spec"]
    assert job["metadata"]["name"] == "llm-r2"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == \
        ("Indexed", 4, 4, 0)
    env = _env(job)
    assert env["PET_NNODES"] == "4" and env["WORLD_SIZE"] == "4"
    assert env["PET_NPROC_PER_NODE"] == "8"
    assert env["PET_MASTER_ADDR"] == env["MASTER_ADDR"] == "llm-r2-0.llm-gang"
    assert env["PET_MASTER_PORT"] == env["MASTER_PORT"] == "29600"
    rank = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["PET_NODE_RANK"] == rank and env["RANK"] == rank
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["CODEKILN_RESOURCE_NAME"] == "llm" and env["CODEKILN_RESOURCE_PLURAL"] == "pretrainruns"
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "llm-gang" and pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "llm-workload"
    container = pod["containers"][0]
    assert container["command"][:3] == ["torchrun", "-m", "codekiln.workloads.train"]
    assert container["command"][-2:] == ["--config", "/etc/codekiln/resource.json"]
    assert {"name": "codekiln-config", "mountPath": "/etc/codekiln", "readOnly": True} in container["volumeMounts"]


def test_user_env_cannot_override_reserved_names():
    for reserved in ("PET_NNODES", "MASTER_ADDR", "RANK", "WORLD_SIZE", "CODEKILN_SANDBOX_URL"):
        result = validate_document(document("PretrainRun", env=[{"name": reserved, "value": "x"}]))
        assert not result.ok
        assert any(err.startswith("spec.env[0].name") and reserved in err for err in result.errors), result.errors


def test_user_env_is_appended_after_operator_env():
    job = gang.build_gang_job(resource("PretrainRun", env=[{"name": "HF_HOME", "value": "/hf"}]), 0)
    assert _env(job)["HF_HOME"] == "/hf"


def test_headless_service_selects_gang_pods():
    run = resource("RLRun", "7b")
    service = gang.build_gang_service(run)
    job = gang.build_gang_job(run, 0)
    assert service["metadata"]["name"] == "x7b-gang"  # DNS-1035: must start with a letter
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    assert _env(job)["PET_MASTER_ADDR"] == "7b-r0-0.x7b-gang"


def test_rl_job_gets_sandbox_url_and_rl_module():
    job = gang.build_gang_job(resource("RLRun", "rl"), 0, sandbox_url="http://pool.ns.svc:8080")
    assert _env(job)["CODEKILN_SANDBOX_URL"] == "http://pool.ns.svc:8080"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][2] == "codekiln.workloads.rl"


def test_every_child_has_a_controller_owner_reference():
    for kind in ("DataPipeline", "PretrainRun", "RLRun", "SandboxPool"):
        res = resource(kind, "own", scheduling={"gangScheduling": True} if kind != "DataPipeline" else {})
        for manifest in render_all(res):
            (ref,) = manifest["metadata"]["ownerReferences"]
            assert ref == {"apiVersion": "codekiln.dev/v1alpha1", "kind": kind, "name": "own",
                           "uid": res.metadata.model_extra["uid"], "controller": True, "blockOwnerDeletion": True}
            assert manifest["metadata"]["labels"][names.LABEL_NAME] == "own"
            assert manifest["metadata"]["namespace"] == "default"


def test_builders_refuse_a_resource_without_uid():
    with pytest.raises(ValueError, match="metadata.uid"):
        common.build_config_map(type(resource("SandboxPool")).model_validate(document("SandboxPool", uid=False)))


def test_pods_read_the_validated_resource_with_defaults_from_their_annotation():
    run = resource("PretrainRun", "cfg")
    assert not [m for m in desired_children(run) if m["kind"] == "ConfigMap"]  # one object fewer per resource
    template = gang.build_gang_job(run, 0)["spec"]["template"]
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "codekiln-config")
    assert volume["downwardAPI"]["items"] == [{"path": "resource.json", "fieldRef": {
        "fieldPath": "metadata.annotations['codekiln.dev/resource']"}}]
    # scaling a pool (kubectl scale, an HPA) does not change its pod template: no rollout of every server
    pools = [sandbox.build_sandbox_deployment(resource("SandboxPool", "p", replicas=n)) for n in (2, 5)]
    assert pools[0]["spec"]["template"] == pools[1]["spec"]["template"]
    doc = json.loads(template["metadata"]["annotations"][common.RESOURCE_ANNOTATION])
    assert doc["metadata"] == {"name": "cfg", "namespace": "default"}
    assert doc["spec"]["maxRestarts"] == 3 and doc["spec"]["masterPort"] == 29500  # defaults filled
    assert validate_document(doc).ok


def test_kueue_queue_creates_suspended_labelled_jobs():
    run = resource("PretrainRun", scheduling={"queueName": "team-a"})
    job = gang.build_gang_job(run, 0)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert gang.build_gang_job(resource("PretrainRun"), 0)["spec"]["suspend"] is False


def test_volcano_gang_scheduling_adds_pod_group_and_scheduler():
    run = resource("PretrainRun", "v", nodes=3, scheduling={"gangScheduling": True})
    job = gang.build_gang_job(run, 1)
    group = gang.build_pod_group(run, 1)
    pod = job["spec"]["template"]
    assert pod["spec"]["schedulerName"] == "volcano"
    assert pod["metadata"]["annotations"][names.VOLCANO_GROUP_ANNOTATION] == group["metadata"]["name"] == "v-r1"
    assert group["spec"]["minMember"] == 3
    custom = gang.build_gang_job(resource("PretrainRun", scheduling={"schedulerName": "kai"}), 0)
    assert custom["spec"]["template"]["spec"]["schedulerName"] == "kai"
    assert names.VOLCANO_GROUP_ANNOTATION not in custom["spec"]["template"]["metadata"]["annotations"]


def test_user_service_account_skips_the_generated_one_but_keeps_the_binding():
    run = resource("PretrainRun", "sa", serviceAccountName="trainer")
    kinds = [m["kind"] for m in desired_children(run)]
    assert "ServiceAccount" not in kinds
    binding = common.build_progress_role_binding(run)
    assert binding["subjects"][0]["name"] == "trainer"
    assert gang.build_gang_job(run, 0)["spec"]["template"]["spec"]["serviceAccountName"] == "trainer"


def test_progress_role_is_scoped_to_one_resource_status():
    (rule,) = common.build_progress_role(resource("RLRun", "r"))["rules"]
    assert rule == {"apiGroups": ["codekiln.dev"], "resources": ["rlruns/status"], "resourceNames": ["r"],
                    "verbs": ["get", "patch"]}


def test_stage_jobs_are_indexed_with_per_shard_retries():
    pipe = resource("DataPipeline", "cur", parallelism=3, backoffLimitPerIndex=5)
    read, dedup = (data.build_stage_job(pipe, i) for i in range(2))
    assert read["metadata"]["name"] == "cur-read" and dedup["metadata"]["name"] == "cur-dedup"
    assert (read["spec"]["completions"], read["spec"]["parallelism"]) == (4, 3)
    assert (dedup["spec"]["completions"], dedup["spec"]["parallelism"]) == (2, 2)
    assert read["spec"]["backoffLimitPerIndex"] == 5 and "backoffLimit" not in read["spec"]
    rules = read["spec"]["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["FailIndex", "Ignore"]
    command = read["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["python", "-m", "codekiln.workloads.data", "--config", "/etc/codekiln/resource.json",
                       "--stage", "read"]
    assert read["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_long_stage_names_fall_back_to_index():
    pipe = resource("DataPipeline", "a" * 40, pipeline={"stages": [
        {"name": "b" * 40, "shards": 1, "steps": [{"readFiles": {"paths": ["/x"]}}]}]})
    assert data.stage_job_names(pipe) == ["a" * 40 + "-s0"]
    assert len(data.stage_job_names(pipe)[0]) <= names.MAX_JOB_NAME


def test_sandbox_deployment_is_hardened():
    pool = resource("SandboxPool", "pool", replicas=3, runtimeClassName="gvisor", sandbox={"port": 9000})
    deploy = sandbox.build_sandbox_deployment(pool)
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deploy["spec"]["replicas"] == 3
    assert pod["automountServiceAccountToken"] is False and pod["runtimeClassName"] == "gvisor"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == \
        "RuntimeDefault"
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
    assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["runAsUser"] == sandbox.SANDBOX_UID
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert container["command"][3:5] == ["serve", "--config"]
    assert container["command"][-3:] == ["--exit-on-self-check-failure", "--termination-log", "/dev/termination-log"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert deploy["spec"]["selector"]["matchLabels"] == deploy["spec"]["template"]["metadata"]["labels"]


def test_sandbox_pool_can_name_a_localhost_seccomp_profile_and_own_user_namespace():
    pool = resource("SandboxPool", "pool", seccompLocalhostProfile="profiles/codekiln-sandbox.json", hostUsers=False,
                    procMount="Unmasked")
    pod = sandbox.build_sandbox_deployment(pool)["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["procMount"] == "Unmasked"
    expected = {"type": "Localhost", "localhostProfile": "profiles/codekiln-sandbox.json"}
    assert pod["securityContext"]["seccompProfile"] == expected
    assert pod["containers"][0]["securityContext"]["seccompProfile"] == expected
    assert pod["hostUsers"] is False
    plain = sandbox.build_sandbox_deployment(resource("SandboxPool", "p"))["spec"]["template"]["spec"]
    assert "hostUsers" not in plain and "procMount" not in plain["containers"][0]["securityContext"]


def test_sandbox_network_policy_denies_all_egress():
    policy = sandbox.build_sandbox_network_policy(resource("SandboxPool", "pool"))
    assert "Egress" in policy["spec"]["policyTypes"] and policy["spec"]["egress"] == []
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_sandbox_url_and_selector_match_the_service():
    pool = resource("SandboxPool", "pool", sandbox={"port": 8081})
    service = sandbox.build_sandbox_service(pool)
    assert names.sandbox_url("pool", "default", 8081) == "http://pool.default.svc:8081"
    assert service["metadata"]["name"] == "pool"
    assert sandbox.selector_string(pool) == names.label_selector(service["spec"]["selector"])
