"""Argo CD health checks (deploy/argocd): every phase's status, run through the Lua scripts with lupa."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa", reason="lupa (a Lua runtime from PyPI) is not installed")

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
RUN = (ROOT / "health" / "run.lua").read_text()
POOL = (ROOT / "health" / "sandboxpool.lua").read_text()


def health(script: str, obj: dict) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    return hs["status"], hs["message"]


def cond(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def run(phase: str | None, *conditions: dict, generation: int = 1, observed: int = 1, **extra) -> dict:
    obj = {"apiVersion": "codekiln.dev/v1alpha1", "kind": "PretrainRun",
           "metadata": {"name": "r", "generation": generation}, "spec": {}}
    if phase is not None:
        obj["status"] = {"phase": phase, "observedGeneration": observed, "conditions": list(conditions), **extra}
    return obj


RUN_CASES = [
    ("no status yet", run(None), "Progressing", "Waiting for the codekiln operator"),
    ("spec changed, not observed", run("Running", generation=3, observed=2), "Progressing", "generation 3"),
    ("waits on spec.after", run("Pending", cond("DependenciesReady", "False", "WaitingForDependencies",
                                                "waiting for DataPipeline 'data' (Running)")),
     "Progressing", "waiting for DataPipeline 'data'"),
    ("waits on its pool", run("Pending", cond("SandboxPoolReady", "False", "SandboxPoolNotReady",
                                              "SandboxPool 'pool' has 0/2 ready replicas")),
     "Progressing", "0/2 ready"),
    ("gang starting", run("Pending", cond("Created", "True", "GangCreated", "gang Job r-r0 created"),
                          cond("Running", "False", "PodsStarting", "1/2 pod(s) running")),
     "Progressing", "1/2 pod(s) running"),
    ("running with progress", run("Running", cond("Running", "True", "GangRunning", "2/2"),
                                  progress={"step": 120, "totalSteps": 1000}), "Progressing", "step 120/1000"),
    ("restarting", run("Restarting", cond("Restarting", "True", "GangPodFailed", "pod r-r0-1 failed (exit 1)")),
     "Progressing", "pod r-r0-1 failed"),
    ("suspended", run("Suspended", cond("Suspended", "True", "Suspended", "")), "Suspended", "spec.suspend"),
    ("succeeded", run("Succeeded", cond("Complete", "True", "GangSucceeded", "all 2 pod(s) completed"),
                      message="all 2 pod(s) completed"), "Healthy", "all 2 pod(s) completed"),
    ("failed", run("Failed", cond("Failed", "True", "MaxRestartsExceeded", "restarted 3 time(s)")),
     "Degraded", "MaxRestartsExceeded: restarted 3 time(s)"),
    ("invalid spec", run("Failed", cond("Failed", "True", "InvalidSpec", "spec.nodes: must be >= 1")),
     "Degraded", "InvalidSpec: spec.nodes"),
]


@pytest.mark.parametrize(("case", "obj", "status", "words"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_health(case, obj, status, words):
    got, message = health(RUN, obj)
    assert got == status and words in message, (got, message)


def pool(*conditions: dict, **extra) -> dict:
    return {"kind": "SandboxPool", "metadata": {"name": "p", "generation": 1},
            "status": {"observedGeneration": 1, "conditions": list(conditions), **extra}}


POOL_CASES = [
    ("no status yet", {"kind": "SandboxPool", "metadata": {"name": "p"}}, "Progressing", "operator"),
    ("starting", pool(cond("Ready", "False", "ReplicasNotReady", "0/2 sandbox server(s) ready")), "Progressing",
     "0/2"),
    ("ready", pool(cond("Ready", "True", "AllReplicasReady", "2/2 sandbox server(s) ready")), "Healthy", "2/2"),
    ("ready while scaling", pool(cond("Ready", "True", "MinimumReplicasReady", "2/5 ready (minimum 1)"),
                                 cond("Progressing", "True", "ScalingUp", "2/5 sandbox server(s) ready")),
     "Healthy", "2/5 sandbox server(s) ready"),
    ("cannot isolate", pool(cond("Ready", "False", "SandboxUnavailable", "pod p-x: user namespaces denied")),
     "Degraded", "user namespaces denied"),
    ("scaled to zero", pool(cond("Ready", "False", "ScaledToZero", "spec.replicas is 0")), "Suspended",
     "replicas is 0"),
]


@pytest.mark.parametrize(("case", "obj", "status", "words"), POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pool_health(case, obj, status, words):
    got, message = health(POOL, obj)
    assert got == status and words in message, (got, message)


def test_argocd_cm_patch_holds_the_scripts_for_all_four_kinds():
    data = yaml.safe_load((ROOT / "argocd-cm-patch.yaml").read_text())["data"]
    for kind in ("DataPipeline", "PretrainRun", "RLRun"):
        assert data[f"resource.customizations.health.codekiln.dev_{kind}"] == RUN
    assert data["resource.customizations.health.codekiln.dev_SandboxPool"] == POOL


def test_a_status_the_operator_wrote_is_classified(cluster):
    """A real status from the operator (not a hand-written sample): a pool it made Ready is Healthy."""
    from operator_factories import document

    cluster.create(document("SandboxPool", "argo", replicas=1))
    cluster.wait(lambda: cluster.get("Deployment", "argo"), what="Deployment")
    assert health(POOL, cluster.get("SandboxPool", "argo"))[0] == "Progressing"
    cluster.set_deployment("argo", ready=1)
    cluster.wait_phase("SandboxPool", "argo", "Running")
    assert health(POOL, cluster.get("SandboxPool", "argo")) == ("Healthy", "1/1 sandbox server(s) ready (minimum 1)")
    cluster.create(document("PretrainRun", "argo-run", suspend=True))
    cluster.wait_phase("PretrainRun", "argo-run", "Suspended")
    assert health(RUN, cluster.get("PretrainRun", "argo-run"))[0] == "Suspended"
