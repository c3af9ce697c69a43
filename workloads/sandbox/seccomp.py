"""A seccomp deny-list for sandboxed programs, as the raw BPF bwrap's ``--seccomp FD`` loads.

Programs that score rewards need none of these syscalls; they are the usual kernel attack
surface of an unprivileged user (tracing, keyrings, BPF, perf, userfaultfd, io_uring, module
and mount APIs, namespaces). bwrap installs the filter just before exec, after its own setup.
Only x86_64 has a table here; elsewhere ``filter_bytes()`` returns None and no filter is used.
"""

from __future__ import annotations

import errno
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000

# name -> x86_64 number
DENIED_X86_64 = {
    "ptrace": 101, "syslog": 103, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "init_module": 175, "delete_module": 176, "quotactl": 179, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442, "pivot_root": 155, "clock_settime": 227, "adjtimex": 159,
}
# Denied with ENOSYS so runtimes that probe for them (libuv and io_uring) fall back quietly.
ENOSYS_X86_64 = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


LD_ABS_W, JEQ_K, JGE_K, RET_K = 0x20, 0x15, 0x35, 0x06


def build_filter(denied: dict[str, int], enosys: dict[str, int]) -> bytes:
    """BPF: other ABIs are killed, x32 and listed syscalls fail with EPERM (ENOSYS), the rest run."""
    prog = [
        _insn(LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        _insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _insn(RET_K, 0, 0, RET_KILL_PROCESS),
        _insn(LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
        _insn(JGE_K, 0, 1, X32_SYSCALL_BIT),
        _insn(RET_K, 0, 0, RET_ERRNO | errno.EPERM),
    ]
    for table, err in ((denied, errno.EPERM), (enosys, errno.ENOSYS)):
        for nr in sorted(table.values()):
            prog += [_insn(JEQ_K, 0, 1, nr), _insn(RET_K, 0, 0, RET_ERRNO | err)]
    prog.append(_insn(RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


def filter_bytes() -> bytes | None:
    """The filter for this machine, or None where there is no syscall table for its architecture."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    return build_filter(DENIED_X86_64, ENOSYS_X86_64)
