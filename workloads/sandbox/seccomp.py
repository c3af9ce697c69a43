"""The seccomp filter of sandboxed programs, as raw classic BPF (x86_64 and aarch64).

Programs that score rewards need none of these: the usual kernel attack surface of an
unprivileged user (tracing, keyrings, BPF, perf, userfaultfd, io_uring, module and mount APIs,
namespaces), socket families that escape or probe the network namespace (``AF_VSOCK`` is not
isolated by it; ``AF_NETLINK`` and ``AF_PACKET`` talk to the kernel's network stack), and
``clone`` with namespace flags (no nested user namespaces; ``clone3`` answers ENOSYS so libc
falls back to ``clone``, whose flags the filter can read). The warm sandbox's program process
loads it with ``prctl(PR_SET_SECCOMP)`` after dropping every capability and setting
``no_new_privs``. ``tests/sandbox/test_hardening.py`` checks the syscall numbers of both tables
against libseccomp's own (ctypes).
"""

from __future__ import annotations

import errno
import platform
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
# clone flags that create namespaces (CLONE_NEWTIME, NS, CGROUP, UTS, IPC, USER, PID, NET).
CLONE_NS_FLAGS = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 \
    | 0x40000000
AF_NETLINK, AF_PACKET, AF_VSOCK = 16, 17, 40
DENIED_FAMILIES = {"AF_NETLINK": AF_NETLINK, "AF_PACKET": AF_PACKET, "AF_VSOCK": AF_VSOCK}

# name -> syscall number per architecture; EPERM.
DENIED = {
    "x86_64": {
        "ptrace": 101, "syslog": 103, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
        "swapoff": 168, "reboot": 169, "init_module": 175, "delete_module": 176, "quotactl": 179,
        "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
        "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
        "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "pivot_root": 155,
        "clock_settime": 227, "adjtimex": 159,
    },
    "aarch64": {
        "ptrace": 117, "syslog": 116, "acct": 89, "settimeofday": 170, "mount": 40, "umount2": 39, "swapon": 224,
        "swapoff": 225, "reboot": 142, "init_module": 105, "delete_module": 106, "quotactl": 60,
        "kexec_load": 104, "add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97,
        "perf_event_open": 241, "fanotify_init": 262, "name_to_handle_at": 264, "open_by_handle_at": 265,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "finit_module": 273,
        "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "pivot_root": 41,
        "clock_settime": 112, "adjtimex": 171,
    },
}
# Denied with ENOSYS so runtimes that probe for them fall back quietly (libuv, glibc's clone3).
ENOSYS = {
    "x86_64": {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435},
    "aarch64": {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435},
}
# Syscalls whose first argument the filter inspects.
ARG_CHECKED = {"x86_64": {"clone": 56, "socket": 41, "socketpair": 53},
               "aarch64": {"clone": 220, "socket": 198, "socketpair": 199}}

LD_ABS_W, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH, _ARG0_LO = 0, 4, 16


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(arch: str = "x86_64") -> bytes:
    """The BPF program for ``arch`` (``x86_64`` or ``aarch64``).

    Other ABIs are killed (and x32 fails with EPERM); listed syscalls fail with EPERM or
    ENOSYS; ``clone`` with a namespace flag and ``socket``/``socketpair`` of a denied family
    fail with EPERM / EAFNOSUPPORT; everything else runs.
    """
    if arch not in AUDIT_ARCH:
        raise ValueError(f"no seccomp table for {arch!r} (have: {', '.join(AUDIT_ARCH)})")
    eperm, enosys, eafnosupport = (RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS,
                                   RET_ERRNO | errno.EAFNOSUPPORT)
    checked = ARG_CHECKED[arch]
    prog = [
        _insn(LD_ABS_W, 0, 0, _ARCH),
        _insn(JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        _insn(RET_K, 0, 0, RET_KILL_PROCESS),
        _insn(LD_ABS_W, 0, 0, _NR),
    ]
    if arch == "x86_64":
        prog += [_insn(JGE_K, 0, 1, X32_SYSCALL_BIT), _insn(RET_K, 0, 0, eperm)]
    for table, ret in ((DENIED[arch], eperm), (ENOSYS[arch], enosys)):
        for nr in sorted(table.values()):
            prog += [_insn(JEQ_K, 0, 1, nr), _insn(RET_K, 0, 0, ret)]
    # clone: flags in arg0 (low 32 bits); a namespace flag → EPERM.
    prog += [_insn(JEQ_K, 0, 4, checked["clone"]),
             _insn(LD_ABS_W, 0, 0, _ARG0_LO),
             _insn(JSET_K, 0, 1, CLONE_NS_FLAGS),
             _insn(RET_K, 0, 0, eperm),
             _insn(RET_K, 0, 0, RET_ALLOW)]
    # socket / socketpair: the family in arg0.
    families = sorted(DENIED_FAMILIES.values())
    for name in ("socket", "socketpair"):
        body = [_insn(LD_ABS_W, 0, 0, _ARG0_LO)]
        for i, fam in enumerate(families):
            left = len(families) - i - 1
            body.append(_insn(JEQ_K, left + 1, 0, fam))
        body += [_insn(RET_K, 0, 0, RET_ALLOW), _insn(RET_K, 0, 0, eafnosupport)]
        prog += [_insn(JEQ_K, 0, len(body), checked[name]), *body]
    prog.append(_insn(RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


def machine_arch() -> str | None:
    """This machine's seccomp table name, or None when there is none."""
    m = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(m)


def filter_bytes() -> bytes | None:
    """The filter for this machine, or None where there is no syscall table for its architecture."""
    arch = machine_arch()
    return build_filter(arch) if arch else None

