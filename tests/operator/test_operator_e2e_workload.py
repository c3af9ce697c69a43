"""E2E: the Jobs the operator builds really run their workloads.

The operator (kopf, in-process) turns resources into Indexed Jobs in the emulator; a tiny
"kubelet" here starts each pod of a Job as a local process from the Job's own command, env
(fieldRefs resolved from the pod, ``JOB_COMPLETION_INDEX`` as the Job controller injects it)
and resource.json (downward API).

* PretrainRun: the two "nodes" rendezvous through torchrun's static backend, train
  data-parallel on a real packed corpus, and rank 0 patches ``status.progress`` into the
  emulator. A gang killed mid-run is recreated by the operator and resumes from its
  checkpoint to the same weights as an uninterrupted run.
* DataPipeline: every shard of every stage runs as its own process, stage after stage as the
  operator releases them, and the result equals a local run.
* SandboxPool + RLRun: the Deployment's sandbox server scores the rollouts of the RL gang
  wired to it.

Only what a cluster provides differently is substituted: rank 0's DNS name becomes 127.0.0.1,
and each pod gets its own free ports (pods have their own network namespaces).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from operator_factories import document

from codekiln.operator.builders import names
from codekiln.workloads.data.pack import pack_pieces
from codekiln.workloads.data.packed import write_meta, write_shard
from codekiln.workloads.data.tokenizer import save_tokenizer, train_bpe
from codekiln.workloads.sandbox.local import wait_ready
from codekiln.workloads.special_tokens import EOT, PAD

STDLIB = Path(os.__file__).parent
STEPS = 4


def _packed_corpus(folder: Path, seq_len: int = 32) -> Path:
    texts = [p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))[:20]]
    tok = train_bpe(texts, vocab_size=400)
    eot, pad = tok.token_to_id(EOT), tok.token_to_id(PAD)
    pieces = [np.asarray([*tok.encode(t).ids, eot], dtype=np.uint32) for t in texts]
    tokens, starts = pack_pieces(pieces, seq_len, pad)
    write_meta(folder, seq_len, [write_shard(folder, "shard-00000", tokens, starts, seq_len)])
    save_tokenizer(tok, folder / "tokenizer.json")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pod_env(pod: dict, container: dict) -> dict[str, str]:
    """The container env as the kubelet resolves it (fieldRefs to the pod's annotations)."""
    index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "OMP_NUM_THREADS": "1",
           "JOB_COMPLETION_INDEX": index}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            key = path.removeprefix("metadata.annotations['").removesuffix("']")
            env[var["name"]] = pod["metadata"]["annotations"][key]
    return env


def _command(cluster, template: dict, name: str, tmp_path: Path) -> list[str]:
    """The main container's command with resource.json (the downward-API file of the pod template's
    ``codekiln.dev/resource`` annotation) at a local path."""
    container = template["spec"]["containers"][0]
    config_file = tmp_path / f"{name}.json"
    config_file.write_text(template["metadata"]["annotations"]["codekiln.dev/resource"])
    return [a.replace(f"{names.CONFIG_MOUNT}/{names.CONFIG_KEY}", str(config_file)) for a in container["command"]]


def _gang_env(pod: dict, container: dict, master_port: int, api_url: str) -> dict[str, str]:
    env = _pod_env(pod, container)
    for name in ("PET_MASTER_ADDR", "MASTER_ADDR"):
        env[name] = "127.0.0.1"  # <job>-0.<headless service> in a cluster
    for name in ("PET_MASTER_PORT", "MASTER_PORT"):
        env[name] = str(master_port)
    env["CODEKILN_METRICS_PORT"] = str(_free_port())
    env["CODEKILN_KUBE_API_URL"] = api_url  # in-cluster: https://$KUBERNETES_SERVICE_HOST
    env["CODEKILN_PROGRESS_INTERVAL_S"] = "0.2"
    return env


def _run_gang(cluster, run: str, attempt: int, tmp_path: Path, kill_after_checkpoint: Path | None = None):
    """Run the pods of gang Job ``<run>-r<attempt>``; returns (pods, exit codes, stderr per pod).

    With ``kill_after_checkpoint``, every pod's process group is SIGKILLed once that path exists.
    """
    job_name = f"{run}-r{attempt}"
    job = cluster.wait(lambda: cluster.get("Job", job_name), what=job_name)
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = _command(cluster, job["spec"]["template"], f"{run}-r{attempt}", tmp_path)
    assert command[0] == "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    pods = sorted(cluster.spawn_pods(job_name),
                  key=lambda p: p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
    cluster.run_all(job_name)
    port, api_url = _free_port(), str(cluster.http.base_url)
    procs = [subprocess.Popen(command, env=_gang_env(pod, container, port, api_url), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) for pod in pods]
    if kill_after_checkpoint is not None:
        deadline = time.monotonic() + 300
        while not kill_after_checkpoint.exists() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "the gang finished before it could be killed"
            time.sleep(0.05)
        for proc in procs:  # a node dies: its whole process group, torchrun and the trainer
            os.killpg(proc.pid, 9)
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    return pods, [proc.returncode for proc in procs], errors


def test_operator_built_gang_trains_and_reports_progress(cluster, tmp_path):
    data = _packed_corpus(tmp_path / "packed")
    training = {"data": {"path": str(data), "evalSequences": 4}, "outputDir": str(tmp_path / "out"),
                "stages": [{"name": "s1", "steps": STEPS, "lr": 3e-3, "seqLen": 32, "lrWarmupSteps": 1}],
                "microBatchSize": 1, "gradAccumSteps": 2, "logEverySteps": 1, "model": {"preset": "tiny"},
                "checkpoint": {"everySteps": 2, "keepLast": 1}}
    cluster.create(document("PretrainRun", "e2e", namespace=cluster.ns, uid=False, nodes=2, training=training))
    pods, codes, errors = _run_gang(cluster, "e2e", 0, tmp_path)
    for code, err in zip(codes, errors, strict=True):
        assert code == 0, err[-3000:]

    # rank 0 reported progress into the resource's status while it trained
    progress = cluster.wait(lambda: (cluster.status("PretrainRun", "e2e").get("progress") or {}).get("step") == STEPS
                            and cluster.status("PretrainRun", "e2e")["progress"], what="progress at the last step")
    assert progress["totalSteps"] == STEPS and progress["loss"] > 0 and progress["stage"] == "export"  # last phase
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert (tmp_path / "out" / "hf" / "model.safetensors").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["steps"] == STEPS
    assert summary["tokens"] == STEPS * 2 * 1 * 2 * 32  # world size 2: both pods joined the process group

    for pod in pods:  # the kubelet reports the exits; the operator finishes the run
        cluster.set_pod(pod, "Succeeded", exit_code=0)
    cluster.finish_all("e2e-r0")
    status = cluster.wait_phase("PretrainRun", "e2e", "Succeeded")
    assert status["restarts"] == 0 and status["progress"]["step"] == STEPS


def test_operator_built_pipeline_stages_run_shard_by_shard(cluster, tmp_path):
    from codekiln.workloads.data.runner import parse_pipeline, run_pipeline

    src = STDLIB / "json"
    user_stages = [
        {"name": "read", "shards": 3, "steps": [{"readFiles": {"paths": [str(src)], "languages": ["python"]}}]},
        {"name": "dedup", "shards": 2, "input": "read",  # one block; the operator runs its expanded stages
         "dedup": {"exact": {}, "near": {"numPerm": 64, "threshold": 0.7, "bucketShards": 2}}},
    ]
    stages = [{"name": "read", "shards": 3}, {"name": "dedup-hashes", "shards": 2},
              {"name": "dedup-buckets", "shards": 2}, {"name": "dedup-cluster", "shards": 1},
              {"name": "dedup", "shards": 2}]
    doc = document("DataPipeline", "pipe", namespace=cluster.ns, uid=False, parallelism=3,
                   pipeline={"outputDir": str(tmp_path / "cluster"), "stages": user_stages})
    cluster.create(doc)
    for stage in stages:
        job_name = f"pipe-{stage['name']}"
        job = cluster.wait(lambda job_name=job_name: cluster.get("Job", job_name), what=job_name)
        container = job["spec"]["template"]["spec"]["containers"][0]
        command = _command(cluster, job["spec"]["template"], job_name, tmp_path)
        command[0] = sys.executable if command[0] == "python" else command[0]
        pods = cluster.spawn_pods(job_name)
        cluster.run_all(job_name)
        procs = [subprocess.run(command, env=_pod_env(pod, container), capture_output=True, text=True, timeout=300)
                 for pod in pods]
        for proc, pod in zip(procs, pods, strict=True):
            assert proc.returncode == 0, proc.stderr[-3000:]
            cluster.set_pod(pod, "Succeeded", exit_code=0)
        cluster.sync_job(job_name)
    status = cluster.wait_phase("DataPipeline", "pipe", "Succeeded")
    assert [(s["name"], s["phase"]) for s in status["stages"]] == [(s["name"], "Succeeded") for s in stages]

    local = {**doc, "spec": {**doc["spec"], "pipeline": {**doc["spec"]["pipeline"],
                                                         "outputDir": str(tmp_path / "local")}}}
    run_pipeline(parse_pipeline(local))

    def outputs(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))
                if "rejects" not in p.parts}

    cluster_out, local_out = outputs(tmp_path / "cluster"), outputs(tmp_path / "local")
    assert cluster_out == local_out and any(k.startswith("dedup/data/") for k in cluster_out)
    for stage in stages:  # every shard left its completion marker
        markers = sorted(p.name for p in (tmp_path / "cluster" / stage["name"] / "_markers").glob("*.done"))
        assert markers == [f"shard-{i:05d}.done" for i in range(stage["shards"])]


def test_operator_built_rlrun_scores_rollouts_in_the_pool_it_built(cluster, tmp_path):
    port = _free_port()
    cluster.create(document("SandboxPool", "pool", namespace=cluster.ns, uid=False, replicas=1, sandbox={
        "port": port, "maxConcurrency": 2, "workDir": str(tmp_path / "sandbox"), "sandboxUidBase": 64300}))
    deployment = cluster.wait(lambda: cluster.get("Deployment", "pool"), what="sandbox Deployment")
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    command = _command(cluster, deployment["spec"]["template"], "pool", tmp_path)
    command = [sys.executable if a == "python" else a for a in command]
    command[command.index("--termination-log") + 1] = str(tmp_path / "termination-log")
    env = {"PATH": os.environ["PATH"], **{v["name"]: v["value"] for v in box["env"] if "value" in v}}
    sandbox = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", sandbox, timeout_s=60)
        cluster.set_deployment("pool", ready=1)  # the readiness probe on /readyz passed
        cluster.wait(lambda: cluster.condition("SandboxPool", "pool", "Ready").get("status") == "True", what="pool")

        rl = {"model": {"preset": "tiny", "maxSeqLen": 128}, "device": "cpu", "cpuThreads": 1, "steps": 2,
              "promptsPerStep": 2, "rolloutsPerPrompt": 4, "maxResponseTokens": 16, "optimizer": {"lr": 1e-3},
              "dynamicSampling": {"enabled": False}, "tasks": {"limit": 2}, "warmStart": {"sftSteps": 20},
              "outputDir": str(tmp_path / "rl")}
        cluster.create(document("RLRun", "rl", namespace=cluster.ns, uid=False, nodes=1,
                                sandboxPoolRef={"name": "pool"}, rl=rl))
        job = cluster.wait(lambda: cluster.get("Job", "rl-r0"), what="RL gang Job")
        container = job["spec"]["template"]["spec"]["containers"][0]
        gang = _command(cluster, job["spec"]["template"], "rl-r0", tmp_path)
        gang = [sys.executable, "-m", "torch.distributed.run", *gang[1:]]
        (pod,) = cluster.spawn_pods("rl-r0")
        cluster.run_all("rl-r0")
        env = _gang_env(pod, container, _free_port(), str(cluster.http.base_url))
        assert env["CODEKILN_SANDBOX_URL"] == f"http://pool.{cluster.ns}.svc:{port}"
        env["CODEKILN_SANDBOX_URL"] = f"http://127.0.0.1:{port}"  # the Service's DNS name in a cluster
        proc = subprocess.run(gang, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    metrics = json.loads((tmp_path / "rl" / "metrics.json").read_text())
    assert metrics["sandbox_executions"] > 0 and set(metrics["evals"]) == {"start", "end"}
    progress = cluster.wait(lambda: (cluster.status("RLRun", "rl").get("progress") or {}).get("step") == 2
                            and cluster.status("RLRun", "rl")["progress"], what="RL progress")
    assert progress["totalSteps"] == 2 and "reward" in progress
    cluster.set_pod(pod, "Succeeded", exit_code=0)
    cluster.finish_all("rl-r0")
    assert cluster.wait_phase("RLRun", "rl", "Succeeded")["sandboxUrl"] == f"http://pool.{cluster.ns}.svc:{port}"


def test_gang_killed_mid_run_is_recreated_and_resumes_to_the_same_weights(cluster, tmp_path):
    from safetensors.torch import load_file

    data = _packed_corpus(tmp_path / "packed")

    def training(out: Path) -> dict:
        return {"data": {"path": str(data), "evalSequences": 4}, "outputDir": str(out),
                "stages": [{"name": "s1", "steps": 60, "lr": 3e-3, "seqLen": 32, "lrWarmupSteps": 2}],
                "microBatchSize": 1, "gradAccumSteps": 2, "logEverySteps": 10, "model": {"preset": "tiny"},
                "checkpoint": {"everySteps": 10, "keepLast": 2}}

    cluster.create(document("PretrainRun", "crash", namespace=cluster.ns, uid=False, nodes=2, maxRestarts=2,
                            training=training(tmp_path / "out")))
    pods, codes, _ = _run_gang(cluster, "crash", 0, tmp_path,
                               kill_after_checkpoint=tmp_path / "out" / "checkpoints" / "step-00000010")
    assert all(code != 0 for code in codes)
    cluster.set_pod(pods[0], "Failed", exit_code=137)  # what the kubelet reports for the killed node
    cluster.wait(lambda: cluster.get("Job", "crash-r1"), what="attempt 1")
    assert cluster.status("PretrainRun", "crash")["restarts"] == 1

    pods, codes, errors = _run_gang(cluster, "crash", 1, tmp_path)
    assert codes == [0, 0], errors
    records = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line).get("event", "") for line in records]
    assert any(e.startswith("resumed from") for e in events)  # not a fresh start
    for pod in pods:
        cluster.set_pod(pod, "Succeeded", exit_code=0)
    cluster.finish_all("crash-r1")
    assert cluster.wait_phase("PretrainRun", "crash", "Succeeded")["restarts"] == 1

    # the same run without the crash, launched the same way (2 local nodes under torchrun)
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"apiVersion": "codekiln.dev/v1alpha1", "kind": "PretrainRun",
                                 "metadata": {"name": "clean"}, "spec": {"training": training(tmp_path / "clean")}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "codekiln.workloads.train", "--config", str(clean)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = load_file(str(tmp_path / "out" / "hf" / "model.safetensors"))
    uninterrupted = load_file(str(tmp_path / "clean" / "hf" / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6, msg=key)
