"""In-cluster progress backend: a workload patches its resource's status.progress over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codekiln.workloads.progress import KubernetesStatusSink, ProgressReporter


class _Recorder(BaseHTTPRequestHandler):
    requests: list = []

    def do_PATCH(self):  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, self.headers.get("Content-Type"), self.headers.get("Authorization"),
                                    body, time.monotonic()))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server():
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.requests
    server.shutdown()


def _env(url, tmp_path, **extra):
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    return {"CODEKILN_KUBE_API_URL": url, "CODEKILN_KUBE_TOKEN_FILE": str(token),
            "CODEKILN_RESOURCE_API_VERSION": "codekiln.dev/v1alpha1", "CODEKILN_RESOURCE_PLURAL": "pretrainruns",
            "CODEKILN_RESOURCE_NAME": "run", "CODEKILN_RESOURCE_NAMESPACE": "team", "CODEKILN_PROGRESS_INTERVAL_S":
            "0.3", **extra}


def test_rank0_patches_its_resource_status_throttled(api_server, tmp_path):
    url, requests = api_server
    sink = KubernetesStatusSink.from_env(_env(url, tmp_path, RANK="0"))
    reporter = ProgressReporter(sink=sink, min_interval_s=0.0)
    for step in range(1, 51):  # a burst of 50 updates
        reporter.update(step=step, total_steps=100, loss=2.0 - step / 100, throughput=1e4,
                        throughput_unit="tokens/s", epoch=1)
        time.sleep(0.01)
    sink.close()
    assert 1 <= len(requests) <= 5, len(requests)  # throttled: ~0.5 s of updates, one patch per 0.3 s
    path, content_type, auth, body, _ = requests[-1]
    path, _, query = path.partition("?")
    assert path == "/apis/codekiln.dev/v1alpha1/namespaces/team/pretrainruns/run/status"
    assert query == "fieldManager=codekiln-workload"  # the write is attributed to the workload, not "Python"
    assert content_type == "application/merge-patch+json" and auth == "Bearer sa-token"
    progress = body["status"]["progress"]
    assert progress["step"] == 50 and progress["totalSteps"] == 100 and progress["percent"] == 50.0
    assert progress["throughputUnit"] == "tokens/s" and "etaSeconds" in progress and "updatedAt" in progress
    assert "epoch" not in progress  # not a status.progress field: would be pruned by the API server


def test_only_rank_zero_reports_and_missing_env_disables(api_server, tmp_path):
    url, _ = api_server
    assert KubernetesStatusSink.from_env(_env(url, tmp_path, RANK="3")) is None
    env = _env(url, tmp_path)
    del env["CODEKILN_RESOURCE_NAME"]
    assert KubernetesStatusSink.from_env(env) is None
    assert KubernetesStatusSink.from_env({"RANK": "0", **{k: v for k, v in _env(url, tmp_path).items()
                                                          if k != "CODEKILN_KUBE_API_URL"}}) is None


def test_unreachable_api_never_raises(tmp_path):
    sink = KubernetesStatusSink.from_env(_env("http://127.0.0.1:9", tmp_path))
    ProgressReporter(sink=sink, min_interval_s=0).update(step=1, total_steps=2, force=True)
    sink.close()
    assert sink.errors == 1 and sink.sent == 0
