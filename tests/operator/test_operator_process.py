"""`codekiln operator` as a real process: kubeconfig login, liveness probe, Prometheus metrics, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import yaml
from operator_cluster import Cluster
from operator_factories import document

from codekiln.operator.app import default_namespace


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_operator_process_serves_metrics_and_liveness(k8s, tmp_path):
    cluster = Cluster(k8s, f"p-{uuid.uuid4().hex[:8]}")
    metrics_port, liveness_port = _port(), _port()
    env = {**os.environ, "KUBECONFIG": str(k8s.write_kubeconfig(tmp_path / "kubeconfig"))}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from codekiln.operator.cli import main; sys.exit(main())", "operator",
         "--namespace", cluster.ns, "--metrics-port", str(metrics_port), "--liveness-port", str(liveness_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cluster.wait(lambda: _try(f"http://127.0.0.1:{liveness_port}/healthz"), timeout=30, what="liveness endpoint")
        status, body = _get(f"http://127.0.0.1:{liveness_port}/healthz")
        assert status == 200 and "reconcilePasses" in body
        cluster.create(document("SandboxPool", "pool", replicas=1))
        cluster.wait(lambda: cluster.get("Deployment", "pool"), what="Deployment from the operator process")
        cluster.set_deployment("pool", ready=1)
        cluster.wait_phase("SandboxPool", "pool", "Running")
        cluster.create(document("PretrainRun", "bad", env=[{"name": "RANK", "value": "0"}]))
        cluster.wait_phase("PretrainRun", "bad", "Failed")

        def scraped():
            text = _get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
            done = _metric(text, 'codekiln_operator_resources{kind="SandboxPool",phase="Running"}') == 1 and \
                _metric(text, 'codekiln_operator_reconciles_total{kind="PretrainRun",result="invalid"}') >= 1
            return text if done else None

        text = cluster.wait(scraped, what="metrics")
        assert _metric(text, 'codekiln_operator_reconciles_total{kind="SandboxPool",result="success"}') >= 2
        assert _metric(text, 'codekiln_operator_reconciles_total{kind="PretrainRun",result="invalid"}') >= 1
        assert _metric(text, 'codekiln_operator_resources{kind="PretrainRun",phase="Failed"}') == 1
        assert _metric(text, 'codekiln_operator_reconcile_duration_seconds_count{kind="SandboxPool"}') >= 2
        assert _metric(text, 'codekiln_operator_api_requests_total{method="POST"}') >= 4
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output = process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0]
    assert process.returncode == 0, output[-3000:]


def test_operator_without_flags_watches_the_kubeconfig_namespace(k8s, tmp_path):
    """`codekiln operator` with no flag serves the namespace kubectl would use (the context's), like kopf."""
    cluster = Cluster(k8s, f"p-{uuid.uuid4().hex[:8]}")
    config = yaml.safe_load(k8s.write_kubeconfig(tmp_path / "kubeconfig").read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = cluster.ns
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig")}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from codekiln.operator.cli import main; sys.exit(main())", "operator",
         "--metrics-port", "0", "--liveness-port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        cluster.create(document("SandboxPool", "pool", replicas=1))
        cluster.wait(lambda: cluster.get("Deployment", "pool"), what="Deployment from the flag-less operator")
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert f"watching namespace '{cluster.ns}' (from the kubeconfig" in output


def test_default_namespace_in_cluster_file_and_kubeconfig(tmp_path):
    sa = tmp_path / "namespace"
    sa.write_text("team-x\n")
    assert default_namespace(sa_file=sa) == "team-x"
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://k"}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    assert default_namespace(sa_file=tmp_path / "absent", kubeconfig=str(kubeconfig)) == "default"
    assert default_namespace(sa_file=tmp_path / "absent", kubeconfig=str(tmp_path / "missing")) == "default"


def _try(url: str) -> bool:
    try:
        return _get(url)[0] == 200
    except OSError:
        time.sleep(0.1)
        return False
