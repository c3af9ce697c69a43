"""Operator at scale: N mixed resources in the Kubernetes API emulator, until all have children and run.

The operator runs as a real ``codekiln operator`` process (KUBECONFIG → the emulator of
``tests/k8s``); this process hosts the emulator and plays the controllers the emulator does
not run (Job controller + kubelet: one Running pod per new Job; Deployment controller: all
replicas ready). Resources are DataPipeline, PretrainRun, RLRun (each referencing a
SandboxPool created alongside, so it must wait for the pool to become Ready) and SandboxPool,
in equal parts.

* ours: seconds from the first create until every resource has its children (a Job or a
  Deployment) and reports ``status.phase: Running``; plus the operator's peak RSS (VmHWM),
  reconcile passes and API requests per resource;
* baseline ("bare Job creations"): seconds to create the same number of plain Jobs through
  the same HTTP client (codekiln's ``KubeClient``) and the same concurrency — the floor any
  controller creating one object per resource pays.

``ratio`` = baseline / ours (> 1 would mean ours is faster; it cannot be: ours does strictly more).

    python benchmarks/operator_scale.py [--resources 500] [--concurrency 32] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

from k8s_emulator.server import EmulatorThread  # noqa: E402

from codekiln.operator.crds import build_crds  # noqa: E402
from codekiln.operator.reconcile.kube import KubeClient, KubeConfig  # noqa: E402

KINDS = ("SandboxPool", "DataPipeline", "PretrainRun", "RLRun")
API = "codekiln.dev/v1alpha1"
NS = "bench"
TOTALS: dict[str, int] = {}
POLL_S = 1.0  # the observer's list calls load the same emulator the operator uses: poll gently
MANAGED = "app.kubernetes.io/managed-by=codekiln"


def manifest(kind: str, index: int) -> dict:
    group = index // len(KINDS)
    name = {"SandboxPool": f"pool-{group}", "DataPipeline": f"data-{group}", "PretrainRun": f"pt-{group}",
            "RLRun": f"rl-{group}"}[kind]
    spec = {
        "SandboxPool": {"replicas": 1},
        "DataPipeline": {"pipeline": {"outputDir": "/data/out", "stages": [
            {"name": "read", "shards": 1, "steps": [{"readFiles": {"paths": ["/data"]}}]}]}},
        "PretrainRun": {"nodes": 1, "training": {"data": {"path": "/data/packed"}, "stages": [
            {"name": "s1", "steps": 10, "lr": 3e-4, "seqLen": 128}]}},
        "RLRun": {"nodes": 1, "sandboxPoolRef": {"name": f"pool-{group}"}, "rl": {"algorithm": "grpo"}},
    }[kind]
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}


def bare_job(index: int, namespace: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"bare-{index}", "namespace": namespace},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox:1.36", "command": ["true"]}]}}}}


async def gather_limited(coros, limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def run(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("codekiln_operator_reconciles_total{"):
            result = line.split('result="')[1].split('"')[0]
            totals[result] = totals.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("codekiln_operator_api_requests_total{"):
            totals["api_requests"] = totals.get("api_requests", 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(("codekiln_operator_reconcile_duration_seconds_sum",
                              "codekiln_operator_reconcile_duration_seconds_count")):
            key = line.split("{")[0].rsplit("_", 1)[1]
            totals[f"latency_{key}"] = totals.get(f"latency_{key}", 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


class Controllers:
    """Job controller + kubelet + Deployment controller, reduced to what the benchmark needs."""

    def __init__(self, client: KubeClient):
        self.client = client
        self.jobs_seen: set[str] = set()
        self.deployments_seen: set[str] = set()

    async def step(self, jobs: list[dict], deployments: list[dict]) -> None:
        new_jobs = [j for j in jobs if j["metadata"]["name"] not in self.jobs_seen and not j["spec"].get("suspend")]
        await gather_limited([self._run_pod(job) for job in new_jobs], 16)
        new = [d for d in deployments if d["metadata"]["name"] not in self.deployments_seen]
        await gather_limited([self._ready(d) for d in new], 16)

    async def _run_pod(self, job: dict) -> None:
        name = job["metadata"]["name"]
        self.jobs_seen.add(name)
        template = job["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"{name}-0-bench", "namespace": NS,
            "labels": {**template["metadata"]["labels"], "batch.kubernetes.io/job-name": name},
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                 "uid": job["metadata"]["uid"], "controller": True}]},
            "spec": template["spec"]}
        await self.client.create(pod)
        await self.client.patch("v1", "Pod", NS, pod["metadata"]["name"], {"status": {"phase": "Running"}},
                                subresource="status")
        await self.client.patch("batch/v1", "Job", NS, name, {"status": {"active": 1}}, subresource="status")

    async def _ready(self, deployment: dict) -> None:
        name = deployment["metadata"]["name"]
        self.deployments_seen.add(name)
        replicas = deployment["spec"]["replicas"]
        await self.client.patch("apps/v1", "Deployment", NS, name, {"status": {
            "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}}, subresource="status")


async def count(client: KubeClient, children: list[dict], running: set[str]) -> tuple[int, int]:
    """(resources with children, resources Running); kinds already all Running are not listed again."""
    owners = {f"{c['metadata']['labels'].get('codekiln.dev/name')}/{c['metadata']['labels']['codekiln.dev/kind']}"
              for c in children}
    for kind in KINDS:
        if sum(key.endswith(f"/{kind}") for key in running) == TOTALS[kind]:
            continue
        for obj in await client.list(API, kind, NS):
            if (obj.get("status") or {}).get("phase") == "Running":
                running.add(f"{obj['metadata']['name']}/{kind}")
    return sum(1 for key in owners if key.split("/")[1] in KINDS), len(running)


async def baseline(client: KubeClient, n: int, concurrency: int) -> float:
    started = time.perf_counter()
    await gather_limited([client.create(bare_job(i, "baseline")) for i in range(n)], concurrency)
    return time.perf_counter() - started


async def ours(k8s: EmulatorThread, client: KubeClient, n: int, concurrency: int, timeout_s: float) -> dict:
    kubeconfig = k8s.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig")
    metrics_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "CODEKILN_RESYNC_INTERVAL_S": "600"}
    log = open(os.environ.get("BENCH_OPERATOR_LOG", os.devnull), "w")  # noqa: SIM115 - lives as long as the process
    operator = subprocess.Popen(
        [sys.executable, "-c", "import sys; from codekiln.operator.cli import main; sys.exit(main())",
         "operator", "--namespace", NS, "--metrics-port", str(metrics_port), "--liveness-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(200):  # wait for the metrics endpoint: the operator process is up
            try:
                scrape(metrics_port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # kopf's initial listing and watches
        controllers = Controllers(client)
        resources = [manifest(KINDS[i % len(KINDS)], i) for i in range(n)]
        TOTALS.update({kind: sum(doc["kind"] == kind for doc in resources) for kind in KINDS})
        running_set: set[str] = set()
        started = time.perf_counter()
        await gather_limited([client.create(doc) for doc in resources], concurrency)
        created_s = time.perf_counter() - started
        children_s = None
        with Progress(transient=True) as progress:
            task = progress.add_task("resources Running", total=n)
            while True:
                jobs = await client.list("batch/v1", "Job", NS, MANAGED)
                deployments = await client.list("apps/v1", "Deployment", NS, MANAGED)
                await controllers.step(jobs, deployments)
                with_children, running = await count(client, jobs + deployments, running_set)
                elapsed = time.perf_counter() - started
                if children_s is None and with_children == n:
                    children_s = elapsed
                progress.update(task, completed=running, description=f"children {with_children}/{n}, Running")
                if running == n:
                    break
                if elapsed > timeout_s or operator.poll() is not None:
                    raise RuntimeError(f"only {running}/{n} Running after {elapsed:.0f}s "
                                       f"(operator exit code {operator.poll()})")
                await asyncio.sleep(POLL_S)
        all_running_s = time.perf_counter() - started
        stats = scrape(metrics_port)
        operator_cpu_s = cpu_seconds(operator.pid)
        return {"operator_cpu_s": operator_cpu_s, "all_running_s": all_running_s, "all_children_s": children_s,
                "create_calls_s": created_s,
                "peak_rss_mib": peak_rss_mib(operator.pid), "reconciles": stats,
                "reconciles_per_resource": round(sum(v for k, v in stats.items()
                                                     if k in ("success", "error", "conflict")) / n, 2),
                "api_requests_per_resource": round(stats.get("api_requests", 0) / n, 1),
                "mean_reconcile_ms": round(1000 * stats.get("latency_sum", 0) / max(1, stats.get("latency_count", 1)),
                                           2)}
    finally:
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
        log.close()


async def main_async(args: argparse.Namespace) -> dict:
    k8s = EmulatorThread(crds=build_crds(), namespaces=[NS, "baseline"])
    k8s.emulator.request_history = 50  # kmock scans its request log per request; keep it short
    k8s.emulator.request_counts = collections.Counter()
    k8s.start()
    client = KubeClient(KubeConfig(server=k8s.url), max_connections=args.concurrency,
                        user_agent="codekiln-benchmark/0", field_manager="codekiln-benchmark")
    try:
        base_s = await baseline(client, args.resources, args.concurrency)
        k8s.emulator.request_counts.clear()
        result = await ours(k8s, client, args.resources, args.concurrency, args.timeout_s)
        breakdown = {" ".join(str(part) for part in key if part): count
                     for key, count in sorted(k8s.emulator.request_counts.items(), key=lambda kv: -kv[1])
                     if key[0] == "codekiln-operator"}
    finally:
        await client.close()
        k8s.stop()
    n = args.resources
    creates = sum(v for k, v in breakdown.items() if k.split()[1] == "POST" and k.split()[2] != "events")
    floor = creates / n + 1.0  # each child created once + one status write: what any controller must send
    return {
        "name": "operator_scale",
        "metric": "operator API requests per resource (reconciler reads + writes, until all are Running)",
        "unit": "requests/resource",
        "ours": result["api_requests_per_resource"],
        "baseline": round(floor, 2),
        "baseline_name": "floor measured in the same run: child creations per resource + one status write",
        "ratio": round(floor / result["api_requests_per_resource"], 3),
        "goal": "<= 8 requests/resource at 500 mixed resources; peak RSS <= 150 MiB at 2,000",
        "note": "request counts do not depend on CPU load (other agents share the 2 cores); seconds do",
        "all_running_s": round(result["all_running_s"], 2),
        "bare_job_creations_s": round(base_s, 2),
        "all_children_s": round(result["all_children_s"], 2),
        "create_calls_s": round(result["create_calls_s"], 2),
        "operator_peak_rss_mib": round(result["peak_rss_mib"], 1),
        "operator_cpu_s": round(result["operator_cpu_s"], 1),
        "reconciles": result["reconciles"],
        "reconciles_per_resource": result["reconciles_per_resource"],
        "mean_reconcile_ms": result["mean_reconcile_ms"],
        "operator_requests_by_verb": breakdown,
        "resources": args.resources,
        "kinds": list(KINDS),
        "concurrency": args.concurrency,
        "host": f"{platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=500, help="resources to create (mixed kinds)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent create requests")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up after this long")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
