"""The node-local seccomp profile for SandboxPool pods (``spec.seccompLocalhostProfile``).

Container runtimes' ``RuntimeDefault`` profile refuses namespace creation (``unshare``,
``clone`` with namespace flags, ``mount``, ``pivot_root``) to processes without
CAP_SYS_ADMIN, so bubblewrap cannot isolate runs and the sandbox fails closed. This profile
allows exactly that and still denies the kernel attack surface the server never needs
(modules, kexec, BPF, perf, keyrings, ptrace, userfaultfd, io_uring, clock and swap control).
User programs get a second, stricter filter from bubblewrap itself
(``codekiln.workloads.sandbox.seccomp``), which also denies the namespace and mount calls.

Format: the OCI / Kubernetes seccomp JSON profile. Architectures not listed are killed.
"""

from __future__ import annotations

import errno
import json
from typing import Any

PROFILE_PATH = "codekiln/sandbox.json"  # relative to the kubelet's seccomp root (/var/lib/kubelet/seccomp)

DENIED_EPERM = (
    "acct", "add_key", "adjtimex", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "fanotify_init", "finit_module", "get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "perf_event_open", "process_vm_readv", "process_vm_writev", "ptrace", "query_module",
    "quotactl", "quotactl_fd", "reboot", "request_key", "setdomainname", "settimeofday", "swapoff", "swapon",
    "sysfs", "syslog", "_sysctl", "uselib", "userfaultfd", "ustat",
)
# ENOSYS, not EPERM, so runtimes that probe for io_uring (libuv, Node) fall back quietly.
DENIED_ENOSYS = ("io_uring_enter", "io_uring_register", "io_uring_setup")
ARCHITECTURES = ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64")


def sandbox_pod_profile() -> dict[str, Any]:
    """The profile as a JSON-ready dict."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(ARCHITECTURES),
        "syscalls": [
            {"names": sorted(DENIED_EPERM), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            {"names": sorted(DENIED_ENOSYS), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        ],
    }


def render() -> str:
    return json.dumps(sandbox_pod_profile(), indent=2) + "\n"
