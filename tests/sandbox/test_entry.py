"""Config, the in-pod entry (``python -m codekiln.workloads.sandbox``) and the local runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from pydantic import ValidationError

from codekiln.workloads.sandbox.__main__ import load_config
from codekiln.workloads.sandbox.config import SandboxConfig, SandboxLimits

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "sandboxpool.yaml")


def example() -> dict:
    with open(EXAMPLE) as fh:
        return yaml.safe_load(fh)


def test_example_is_a_valid_sandboxpool():
    from codekiln.operator.resources import SandboxPool

    resource = SandboxPool.model_validate(example())
    assert resource.spec.replicas >= 1
    assert resource.spec.sandbox.limits.run_timeout_s == 10


def test_config_rejects_inconsistent_limits():
    with pytest.raises(ValidationError, match="run_timeout_s"):
        SandboxLimits(run_timeout_s=100, max_timeout_s=10)
    with pytest.raises(ValidationError, match="memory_mb"):
        SandboxLimits(memory_mb=8192, max_memory_mb=1024)
    with pytest.raises(ValidationError, match="maxQueue|max_queue"):
        SandboxConfig.model_validate({"maxQueue": -1})


def test_load_config_from_resource_json_with_overrides(tmp_path):
    resource = example()
    path = tmp_path / "resource.json"
    path.write_text(json.dumps(resource))
    config = load_config(str(path), {"port": 0, "host": None})
    assert config.port == 0 and config.host == "0.0.0.0" and config.max_queue == 128


def _serve(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codekiln.workloads.sandbox", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_bad_config_file_names_the_field(tmp_path):
    path = tmp_path / "resource.json"
    path.write_text(json.dumps({"apiVersion": "codekiln.dev/v1alpha1", "kind": "SandboxPool",
                                "metadata": {"name": "x"}, "spec": {"sandbox": {"maxConcurrency": 0}}}))
    proc = _serve(["serve", "--config", str(path)])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "maxConcurrency" in err or "max_concurrency" in err
    assert "Traceback" not in err


def test_in_pod_entry_serves_with_only_its_work_dir_writable(tmp_path):
    """`python -m codekiln.workloads.sandbox --config resource.json` (no subcommand), like the pod runs it."""
    resource = example()
    resource["spec"]["sandbox"].update({"port": 0, "host": "127.0.0.1", "workDir": str(tmp_path / "scratch")})
    path = tmp_path / "resource.json"
    path.write_text(json.dumps(resource))
    proc = _serve(["--config", str(path)], env={"HOME": "/nonexistent", "TMPDIR": str(tmp_path / "scratch")})
    try:
        event = json.loads(proc.stdout.readline())
        assert event["ready"] is True, event
        url = f"http://127.0.0.1:{event['port']}"
        req = urllib.request.Request(url + "/run_code", data=json.dumps(
            {"code": "print(6 * 7)", "language": "python"}).encode(), headers={"Content-Type": "application/json"})
        body = json.loads(urllib.request.urlopen(req, timeout=60).read())
        assert body["run_result"]["stdout"] == "42\n"
        assert sorted(os.listdir(tmp_path / "scratch")) == []  # nothing staged on disk
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_run_local_serves_until_interrupted(tmp_path):
    resource = example()
    resource["spec"]["sandbox"].update({"port": 0, "host": "127.0.0.1", "workDir": str(tmp_path / "w")})
    code = ("import json, sys\nfrom codekiln.workloads.sandbox.runner import run_local\n"
            "sys.exit(run_local(json.loads(sys.argv[1])))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(resource)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        event = json.loads(proc.stdout.readline())
        url = f"http://127.0.0.1:{event['port']}"
        assert json.loads(urllib.request.urlopen(url + "/readyz", timeout=30).read())["status"] == "ready"
        time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SandboxPool rewards" in err


def test_run_local_rejects_bad_spec(capsys):
    from codekiln.workloads.sandbox.runner import run_local

    rc = run_local({"apiVersion": "codekiln.dev/v1alpha1", "kind": "SandboxPool", "metadata": {"name": "x"},
                    "spec": {"sandbox": {"limits": {"memoryMb": 1}}}})
    assert rc == 2
    assert "spec.sandbox.limits.memoryMb" in capsys.readouterr().err


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _paths_hidden_by_tmp() -> list[str]:
    """The checkout and the virtualenv, when they live under /tmp (a fresh /tmp would hide them)."""
    paths = {os.path.realpath(p) for p in (REPO_ROOT, sys.prefix)}
    return sorted(p for p in paths if p == "/tmp" or p.startswith("/tmp/"))


def _start_wrapped(wrapper: list[str], serve_args: list[str]) -> tuple[subprocess.Popen, dict]:
    py = os.path.join(os.path.dirname(sys.executable), os.path.basename(sys.executable))
    cmd = [*wrapper, py, "-m", "codekiln.workloads.sandbox", "serve", "--host", "127.0.0.1", "--port", "0",
           *serve_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"server did not start: {proc.communicate(timeout=30)[1][-2000:]}")
    return proc, json.loads(line)


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/run_code", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def test_serves_with_a_read_only_root_and_only_tmp_writable():
    """Like the pod: the root filesystem is read-only, /tmp a tmpfs (a private mount namespace; CI is root)."""
    assert os.geteuid() == 0, "this isolation test needs root (CI runs as root)"
    keep = _paths_hidden_by_tmp()
    # Keep the checkout / virtualenv visible when they live under /tmp: bind the old /tmp aside first.
    rebind = "".join(f" && mkdir -p {p} && mount --bind /mnt/old-tmp{p[len('/tmp'):]} {p}" for p in keep)
    setup = ("mount --make-rprivate / && mkdir -p /mnt/old-tmp && mount --bind /tmp /mnt/old-tmp"
             " && mount -t tmpfs -o size=64m tmpfs /tmp" + rebind + " && mount -o remount,bind,ro /"
             ' && exec "$@"')
    proc, event = _start_wrapped(["unshare", "--mount", "sh", "-c", setup, "sh"],
                                 ["--work-dir", "/tmp/codekiln-sandbox"])
    try:
        assert event["ready"] is True, event
        url = f"http://127.0.0.1:{event['port']}"
        for language, code in (("python", "print(6 * 7)"), ("c", '#include <stdio.h>\nint main(){puts("42");}')):
            status, body = _post(url, {"code": code, "language": language})
            assert status == 200 and body["run_result"]["stdout"] == "42\n", body
    finally:
        _stop(proc)


def test_without_working_namespaces_the_server_fails_closed():
    """In a container whose /proc is masked, bwrap cannot mount /proc: not ready, and no code runs (503)."""
    keep = [arg for p in _paths_hidden_by_tmp() for arg in ("--ro-bind", p, p)]
    wrapper = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *keep,
               "--unshare-user", "--unshare-pid", "--die-with-parent", "--uid", "65532", "--gid", "65532"]
    proc, event = _start_wrapped(wrapper, ["--work-dir", "/tmp/codekiln-sandbox"])
    try:
        assert event["ready"] is False and "proc" in event["error"], event
        url = f"http://127.0.0.1:{event['port']}"
        assert urllib.request.urlopen(url + "/healthz", timeout=10).status == 200
        status, body = _post(url, {"code": "print(1)", "language": "python"})
        assert status == 503 and body["status"] == "SandboxError" and "not ready" in body["message"]
    finally:
        _stop(proc)
