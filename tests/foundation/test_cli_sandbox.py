"""`codekiln sandbox serve` starts a real, isolated server that answers SandboxFusion requests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sandbox_serve_runs_code(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "codekiln.operator.cli", "sandbox", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--work-dir", str(tmp_path / "work"), "--max-concurrency", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = httpx.post(f"{url}/run_code", json={"code": "print(6 * 7)", "language": "python"}, timeout=30).json()
        assert body["status"] == "Success" and body["run_result"]["stdout"] == "42\n", body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
