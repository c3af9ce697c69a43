"""Test launcher: load an OCI seccomp JSON profile with libseccomp (ctypes), then exec a command.

    python seccomp_exec.py PROFILE.json -- COMMAND [ARGS...]

What runc does for a pod's ``seccompProfile`` before it starts the container, so tests run the
real sandbox server under the profile a SandboxPool pod gets. Syscall names the kernel or
libseccomp does not know are skipped (as runc does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

ACT_ALLOW = 0x7FFF0000
ACT_KILL_PROCESS = 0x80000000
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ALLOW":
        return ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | ((errno_ret if errno_ret is not None else 1) & 0xFFFF)
    if name in ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"):
        return ACT_KILL_PROCESS
    raise ValueError(f"unsupported seccomp action {name}")


def load(profile: dict) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(action(profile["defaultAction"], profile.get("defaultErrnoRet")))
    if not ctx:
        raise OSError("seccomp_init failed")
    for arch in profile.get("architectures", []):
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if token:
            lib.seccomp_arch_add(ctx, token)  # -EEXIST for the native one
    for rule in profile.get("syscalls", []):
        act = action(rule["action"], rule.get("errnoRet"))
        args = rule.get("args") or []
        array = (ArgCmp * max(len(args), 1))(*[
            ArgCmp(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args])
        for name in rule["names"]:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                continue
            rc = lib.seccomp_rule_add_array(ctx, act, nr, len(args), array)
            if rc < 0:
                raise OSError(-rc, f"seccomp_rule_add({name}) failed")
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        raise OSError(-rc, "seccomp_load failed")


def main() -> None:
    sep = sys.argv.index("--")
    with open(sys.argv[1]) as fh:
        load(json.load(fh))
    argv = sys.argv[sep + 1 :]
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
