"""The SandboxPool pod's seccomp profile, loaded with libseccomp around a real sandbox server.

Under a RuntimeDefault-like profile (namespace creation refused, as containerd and CRI-O do
for pods without CAP_SYS_ADMIN) bubblewrap cannot isolate and the server fails closed; under
the profile the chart ships (``spec.seccompLocalhostProfile``) it is ready and runs code, and
the server process itself still cannot reach the kernel attack surface the profile denies.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import httpx

from codekiln.operator.builders.seccomp_profile import DENIED_EPERM, sandbox_pod_profile
from codekiln.workloads.sandbox.config import EXIT_SANDBOX_UNAVAILABLE
from codekiln.workloads.sandbox.local import local_server_process

from .helpers import assert_healthy, make_config, run

LAUNCHER = str(Path(__file__).with_name("seccomp_exec.py"))
CLONE_NEWUSER = 0x10000000
NAMESPACE_FLAGS = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

RUNTIME_DEFAULT_LIKE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["unshare", "setns", "mount", "umount2", "pivot_root"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": errno.EPERM},
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM,
         "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ],
}


def _write(tmp_path: Path, name: str, profile: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(profile))
    return str(path)


def _syscall_errno(profile_path: str, name: str) -> int:
    """errno of calling syscall ``name`` (zero arguments) under the profile; 0 when it got past seccomp."""
    code = (
        "import ctypes, os, sys\n"
        "lib = ctypes.CDLL(None, use_errno=True)\n"
        "seccomp = ctypes.CDLL('libseccomp.so.2')\n"
        f"nr = seccomp.seccomp_syscall_resolve_name(b'{name}')\n"
        "rc = lib.syscall(nr, 0, 0, 0, 0, 0)\n"
        "print(ctypes.get_errno() if rc < 0 else 0)\n"
    )
    out = subprocess.run([sys.executable, LAUNCHER, profile_path, "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout.strip())


def test_runtime_default_like_profile_makes_the_server_fail_closed(tmp_path: Path) -> None:
    profile = _write(tmp_path, "runtime-default-like.json", RUNTIME_DEFAULT_LIKE)
    config = make_config(str(tmp_path / "work"), sandbox_uid_base=64000)
    with local_server_process(config, launcher=[sys.executable, LAUNCHER, profile, "--"],
                              require_ready=False) as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "self-check failed" in ready.json()["message"]
        refused = http.post("/run_code", json={"code": "print(1)", "language": "python"})
        assert refused.status_code == 503 and "not ready" in refused.text  # nothing ran unisolated


def test_pod_server_exits_with_the_reason_in_its_termination_log(tmp_path: Path) -> None:
    # what the SandboxPool container runs: exit 3 and a termination message the operator shows in status
    profile = _write(tmp_path, "runtime-default-like.json", RUNTIME_DEFAULT_LIKE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(make_config(str(tmp_path / "work"), sandbox_uid_base=64200, port=0,
                                             host="127.0.0.1").to_wire()))
    log = tmp_path / "termination-log"
    proc = subprocess.run([sys.executable, LAUNCHER, profile, "--", sys.executable, "-m", "codekiln.workloads.sandbox",
                           "serve", "--config", str(config), "--exit-on-self-check-failure",
                           "--termination-log", str(log)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_SANDBOX_UNAVAILABLE, proc.stderr
    assert log.read_text().startswith("sandbox self-check failed: ")
    assert "error: sandbox self-check failed" in proc.stderr


def test_shipped_pod_profile_lets_the_sandbox_isolate_and_run(tmp_path: Path) -> None:
    profile = _write(tmp_path, "sandbox.json", sandbox_pod_profile())
    config = make_config(str(tmp_path / "work"), sandbox_uid_base=64100)
    with local_server_process(config, launcher=[sys.executable, LAUNCHER, profile, "--"]) as (url, proc), \
            httpx.Client(base_url=url, timeout=120) as http:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "Seccomp:\t2" in status  # the server really runs under the filter
        assert_healthy(http)
        for language, code in (("bash", "echo $((6*7))"), ("cpp", "#include <cstdio>\nint main(){puts(\"42\");}")):
            body = run(http, code, language=language)
            assert body["status"] == "Success" and body["run_result"]["stdout"].strip() == "42", body
        # isolation still holds under the profile: no network inside a run
        body = run(http, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
        assert body["status"] == "Failed"


def test_pod_profile_denies_the_kernel_attack_surface(tmp_path: Path) -> None:
    profile = _write(tmp_path, "sandbox.json", sandbox_pod_profile())
    for name in ("keyctl", "bpf", "perf_event_open", "kexec_load", "ptrace", "userfaultfd"):
        assert name in DENIED_EPERM
        assert _syscall_errno(profile, name) == errno.EPERM, name
    assert _syscall_errno(profile, "io_uring_setup") == errno.ENOSYS
    # what bubblewrap needs passes the filter (it fails later on bad arguments, not with EPERM)
    assert _syscall_errno(profile, "unshare") == 0  # unshare(0) is a valid no-op
