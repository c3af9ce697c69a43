"""Helpers of the sandbox tests (HTTP calls against a real server)."""

from __future__ import annotations

import base64

import httpx
import psutil

from codekiln.workloads.sandbox.config import SandboxConfig, SandboxLimits

SECRET = "ck-secret-token-5f1e2d"
OUTPUT_CAP = 64 * 1024
# Slot uids of the test servers: apart from the default base (61000) other local servers use.
UID_BASE = 63000


def make_config(work_dir: str, **overrides) -> SandboxConfig:
    """Small limits so the adversarial cases finish fast."""
    limits = SandboxLimits(run_timeout_s=3.0, compile_timeout_s=20.0, max_timeout_s=30.0, memory_mb=256,
                           max_memory_mb=1024, max_processes=32, max_output_bytes=OUTPUT_CAP, workspace_mb=16,
                           tmp_mb=16, max_file_size_mb=8)
    fields = {"max_concurrency": 4, "max_queue": 256, "limits": limits, "work_dir": work_dir,
              "sandbox_uid_base": UID_BASE, **overrides}
    return SandboxConfig(**fields)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def run(http: httpx.Client, code: str, language: str = "python", expect_status: int = 200, **fields) -> dict:
    resp = http.post("/run_code", json={"code": code, "language": language, **fields})
    assert resp.status_code == expect_status, resp.text
    body = resp.json()
    assert "message" in body
    return body


def assert_healthy(http: httpx.Client) -> None:
    """The server answers and still runs a normal program correctly."""
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    body = run(http, "print(sum(range(10)))")
    assert body["status"] == "Success", body
    assert body["run_result"]["stdout"] == "45\n"


def is_warm_sandbox(proc: psutil.Process) -> bool:
    """Part of a warm sandbox, which stays between runs: bwrap, the zygote python3 it runs, and the
    zygote's spare jobs set up ahead, idle with nothing else below them: init → program (one-shot
    slots, whose zygote keeps the job itself) or keeper → init → program (a session's command)."""
    try:
        name = proc.name()
        if name == "bwrap":
            return True
        chain = [proc]
        while len(chain) < 5:
            parent = chain[-1].parent()
            if parent is None:
                return False
            if parent.name() == "bwrap":
                break
            chain.append(parent)
        else:
            return False
        if len(chain) == 1:
            return name.startswith("python3")  # the zygote
        top = chain[-2]  # the zygote's child
        for shape in (2, 3):  # processes in a spare below the zygote
            spare, node = [top], top
            while len(spare) < shape:
                below = node.children()
                if len(below) != 1:
                    break
                node = below[0]
                spare.append(node)
            if len(spare) == shape and not node.children() and proc in spare:
                return True
        return False
    except psutil.Error:
        return False
