"""The real ``kubectl`` (and ``kubectl codekiln``) against the emulator with the operator running.

apply, get with printer columns, scale, delete with garbage collection, CEL name rules, the plugin's
get/describe/logs/wait, fieldManager/User-Agent on every operator write. Skipped where no kubectl is installed.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from operator_factories import document

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")
BIN = Path(sys.executable).parent  # kubectl finds the kubectl-codekiln plugin on PATH


@pytest.fixture(scope="module")
def kubeconfig(k8s, tmp_path_factory):
    return k8s.write_kubeconfig(tmp_path_factory.mktemp("kubectl") / "kubeconfig")


def kubectl(kubeconfig, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=input, env=env, timeout=60)
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done


def table(text: str) -> list[dict[str, str]]:
    """kubectl's column output as dicts (columns are separated by 2+ spaces; empty cells stay aligned)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def test_apply_get_scale_delete_with_the_real_kubectl(k8s, cluster, kubeconfig):
    ns = cluster.ns
    kubectl(kubeconfig, "wait", "--for=condition=established", "--timeout=20s",
            "customresourcedefinition/sandboxpools.codekiln.dev", "customresourcedefinition/datapipelines.codekiln.dev")
    docs = [document("SandboxPool", "pool", replicas=2), document("DataPipeline", "pipe")]
    for doc in docs:
        doc["metadata"] = {"name": doc["metadata"]["name"]}
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    cluster.wait(lambda: cluster.get("Deployment", "pool"), what="Deployment")
    cluster.set_deployment("pool", ready=2)
    cluster.wait_phase("SandboxPool", "pool", "Running")
    cluster.wait_phase("DataPipeline", "pipe", "Running")

    (pool,) = table(kubectl(kubeconfig, "get", "sandboxpools", "-n", ns).stdout)
    assert (pool["PHASE"], pool["READY"], pool["DESIRED"], pool["AVAILABLE"]) == ("Running", "True", "2", "2")
    (pipe,) = table(kubectl(kubeconfig, "get", "dp", "-n", ns, "-o", "wide").stdout)
    assert pipe["PHASE"] == "Running" and pipe["READY"] == "True"
    assert (pipe["DONE"], pipe["STAGES"]) == ("0", "2")  # integers, not a list of names in an integer column
    assert pipe["PROGRESS"] == "0"

    # scaling a serving pool keeps it Ready (an autoscaler must not make it flap)
    kubectl(kubeconfig, "scale", "sandboxpool/pool", "-n", ns, "--replicas=4")
    cluster.wait(lambda: cluster.get("Deployment", "pool")["spec"]["replicas"] == 4, what="Deployment scaled")
    cluster.wait(lambda: cluster.condition("SandboxPool", "pool", "Progressing").get("status") == "True",
                 what="Progressing")
    (pool,) = table(kubectl(kubeconfig, "get", "sbp", "pool", "-n", ns).stdout)
    assert (pool["PHASE"], pool["READY"], pool["DESIRED"], pool["AVAILABLE"]) == ("Running", "True", "4", "2")

    # names the operator cannot use are refused by the CRD at apply time (CEL on metadata.name)
    for bad in ("x" * 41, "has.dots"):
        refused = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", check=False,
                          input=yaml.safe_dump({**document("SandboxPool", bad), "metadata": {"name": bad}}))
        assert refused.returncode != 0 and "metadata.name must" in refused.stderr, refused.stderr

    kubectl(kubeconfig, "delete", "sandboxpool", "pool", "-n", ns)
    cluster.wait(lambda: cluster.get("Deployment", "pool") is None and cluster.get("Service", "pool") is None,
                 what="children garbage-collected")


def test_operator_writes_carry_field_manager_and_user_agent(k8s, cluster):
    counts = collections.Counter()
    k8s.emulator.request_counts = counts
    try:
        cluster.create(document("PretrainRun", "ident"))
        cluster.wait(lambda: cluster.get("Job", "ident-r0"), what="gang Job")
        cluster.wait(lambda: any(key[0] == "codekiln-operator" and key[1] == "PATCH" for key in counts),
                     what="a status write")
    finally:
        k8s.emulator.request_counts = None
    writes = [key for key in counts if key[1] in ("POST", "PATCH", "PUT") and key[2] != "events" or
              key[0] == "codekiln-operator" and key[1] in ("POST", "PATCH", "PUT")]
    ours = [key for key in writes if key[0] == "codekiln-operator"]
    assert ours and all(key[4] == "codekiln-operator" for key in ours), ours
    # every write to codekiln objects or their children came from the operator (none attributed to "Python")
    assert not [key for key in writes if key[0].startswith("Python")], writes


def test_plugin_get_describe_logs_wait(k8s, cluster, kubeconfig, tmp_path):
    ns = cluster.ns
    cluster.create(document("PretrainRun", "run", nodes=2))
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    pods = cluster.spawn_pods("run-r0")
    for pod in pods:
        cluster.set_pod(pod, "Running")
        index = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        k8s.emulator.pod_logs[(ns, pod["metadata"]["name"])] = "".join(
            f"[pretrain] step {s}/100 loss 2.5 rank {index}\n" for s in (1, 6, 11))
    cluster.sync_job("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")
    cluster.patch("PretrainRun", "run", {"status": {"progress": {"step": 11, "totalSteps": 100, "percent": 11.0,
                                                                   "loss": 2.5}}}, sub="status")

    listing = kubectl(kubeconfig, "codekiln", "get", "ptr", "-n", ns).stdout
    (row,) = table(listing)
    assert (row["NAME"], row["PHASE"], row["READY"], row["PROGRESS"]) == ("run", "Running", "True", "11/100 (11%)")
    assert row["METRIC"] == "loss 2.5"

    described = kubectl(kubeconfig, "codekiln", "describe", "pretrainrun", "run", "-n", ns).stdout
    assert "Phase:        Running" in described and "GangRunning" in described
    assert re.search(r"^  Job +run-r0 +Active: active 2", described, re.M), described
    assert re.search(r"^  Pod +run-r0-1-\w+ +Running", described, re.M) and "Events:" in described
    assert "GangCreated" in described  # the Event the operator posted

    logs = kubectl(kubeconfig, "codekiln", "logs", "ptr", "run", "-n", ns, "--tail", "1").stdout
    assert logs == "[pretrain] step 11/100 loss 2.5 rank 0\n"  # rank 0 of the current attempt by default
    assert "rank 1" in kubectl(kubeconfig, "codekiln", "logs", "ptr", "run", "-n", ns, "--rank", "1").stdout

    waited = kubectl(kubeconfig, "codekiln", "wait", "ptr", "run", "-n", ns, "--for", "condition=Ready",
                     "--timeout", "10")
    assert "condition met" in waited.stdout
    timed_out = kubectl(kubeconfig, "codekiln", "wait", "ptr", "run", "-n", ns, "--for", "phase=Succeeded",
                        "--timeout", "0.5", "--interval", "0.1", check=False)
    assert timed_out.returncode == 1 and "timed out" in timed_out.stderr
    cluster.finish_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Succeeded")
    assert kubectl(kubeconfig, "codekiln", "wait", "ptr", "run", "-n", ns, "--for", "phase=Succeeded").returncode == 0
    missing = kubectl(kubeconfig, "codekiln", "get", "ptr", "nope", "-n", ns, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_plugin_logs_of_a_pipeline_shard(k8s, cluster, kubeconfig):
    ns = cluster.ns
    cluster.create(document("DataPipeline", "pipe", pipeline={"stages": [
        {"name": "read", "shards": 3, "steps": [{"readFiles": {"paths": ["/data"]}}]}]}))
    cluster.wait(lambda: cluster.list("Job", "codekiln.dev/name=pipe"), what="stage Job")
    job = cluster.list("Job", "codekiln.dev/name=pipe")[0]["metadata"]["name"]
    for pod in cluster.spawn_pods(job):
        index = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        k8s.emulator.pod_logs[(ns, pod["metadata"]["name"])] = f"shard {index} done\n"
    cluster.wait_phase("DataPipeline", "pipe", "Running")
    out = kubectl(kubeconfig, "codekiln", "logs", "dp", "pipe", "-n", ns, "--shard", "2").stdout
    assert out == "shard 2 done\n"
