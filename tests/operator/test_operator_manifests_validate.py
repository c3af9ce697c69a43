"""Deliverable 7: every manifest the builders produce passes kubernetes-validate strict (1.30 and newest)."""

from __future__ import annotations

import uuid
from pathlib import Path

import kubernetes_validate
import pytest
from operator_factories import resource

from codekiln.operator.builders import gang
from codekiln.operator.builders.children import render_all
from codekiln.operator.validation import validate_paths

VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
NOT_BUILTIN = {"scheduling.volcano.sh/v1beta1"}  # CRDs kubernetes-validate has no schema for


def _edge_cases():
    long = "a" * 40
    yield "digit-name", resource("PretrainRun", "1run")
    yield "max-name", resource("PretrainRun", long)
    yield "max-name-long-stage", resource("DataPipeline", long, pipeline={"stages": [
        {"name": "b" * 40, "shards": 100000, "steps": [{"readFiles": {"paths": ["/x"]}}]}]})
    yield "many-nodes", resource("PretrainRun", "big", nodes=4096, nprocPerNode=8, maxRestarts=1000,
                                 masterPort=65535)
    yield "everything", resource(
        "RLRun", "full", nodes=3, suspend=True, activeDeadlineSeconds=3600, ttlSecondsAfterFinished=0,
        image="registry.example.com/team/workload@sha256:" + "0" * 64, imagePullPolicy="Always",
        resourcesPerNode={"requests": {"cpu": "500m", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": "8"}},
        env=[{"name": "HF_HOME", "value": "/data/hf"}, {"name": "EMPTY"}],
        scheduling={"nodeSelector": {"gpu": "h100"}, "priorityClassName": "high", "queueName": "team-a",
                    "gangScheduling": True,
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                    {"key": "k", "value": "v", "tolerationSeconds": 30, "effect": "NoExecute"}]},
        storage={"claimName": "ckpt", "mountPath": "/mnt/ckpt"}, serviceAccountName="trainer-sa",
    )
    yield "volcano-named", resource("PretrainRun", "v", scheduling={"schedulerName": "volcano", "gangScheduling": True})
    yield "pipeline-everything", resource(
        "DataPipeline", "9pipe", parallelism=3, backoffLimitPerIndex=0, suspend=True, activeDeadlineSeconds=10,
        scheduling={"queueName": "q"}, storage={"claimName": "data"}, serviceAccountName="reader")
    yield "pool-zero", resource("SandboxPool", "0pool", replicas=0, runtimeClassName="gvisor",
                                sandbox={"port": 1}, resources={"limits": {"cpu": "1", "memory": "512Mi"}})
    yield "pool-localhost-seccomp", resource("SandboxPool", "lp", seccompLocalhostProfile="codekiln/sandbox.json",
                                             hostUsers=False, procMount="Unmasked")
    yield "pool-big", resource("SandboxPool", "p" * 40, replicas=10000, sandbox={"port": 65535},
                               serviceAccountName="sbx", scheduling={"nodeSelector": {"pool": "sandbox"}})
    for kind in ("DataPipeline", "PretrainRun", "RLRun", "SandboxPool"):
        yield f"default-{kind}", resource(kind)
    from test_pod_overrides import FULL_OVERRIDE, SANDBOX_OVERRIDE

    for kind in ("DataPipeline", "PretrainRun", "RLRun"):
        yield f"overrides-{kind}", resource(kind, "ov", podTemplateOverrides=[FULL_OVERRIDE],
                                            storage={"claimName": "data"})
    yield "overrides-SandboxPool", resource("SandboxPool", "ov", podTemplateOverrides=[SANDBOX_OVERRIDE])


def _example_resources():
    for result in validate_paths([EXAMPLES_DIR]):  # files and Kustomize overlays, as `codekiln run -f examples/`
        assert result.ok, f"{result.source}: {result.errors}"
        doc = result.wire()
        doc["metadata"]["uid"] = str(uuid.uuid4())
        doc["metadata"].setdefault("namespace", "default")
        yield f"{Path(result.source.split('#')[0]).name}:{doc['metadata']['name']}", \
            type(result.resource).model_validate(doc)


CASES = list(_edge_cases()) + list(_example_resources())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("case", "res"), CASES, ids=[c for c, _ in CASES])
def test_manifests_pass_strict_validation(case, res, version):
    manifests = render_all(res, sandbox_url="http://pool.default.svc:8080")
    if res.kind_name in ("PretrainRun", "RLRun"):
        manifests.append(gang.build_gang_job(res, 1000, suspend=True, active_deadline_seconds=5))
    checked = 0
    for manifest in manifests:
        if manifest["apiVersion"] in NOT_BUILTIN:
            continue
        kubernetes_validate.validate(manifest, version, strict=True)
        checked += 1
    assert checked >= 1


def test_strict_validation_catches_a_broken_manifest():
    """The check can fail: an unknown field in a builder's output is rejected."""
    job = gang.build_gang_job(resource("PretrainRun"), 0)
    job["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 8
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.30.0", strict=True)


def test_every_example_document_is_a_case():
    """Each document of examples/ (files and overlays) is rendered and validated (none silently dropped)."""
    documents = len(validate_paths([EXAMPLES_DIR]))
    assert documents >= len(EXAMPLES) + 2  # the two RLRuns live in Kustomize folders
    assert sum(1 for case, _ in CASES if ".yaml:" in case) == documents
    assert sum(1 for case, _ in CASES if ".yaml:" not in case) == 18  # 14 edge cases + 4 overrides
