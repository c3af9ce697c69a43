"""Stopping a warm sandbox leaves its exit to asyncio's child watcher.

``Popen.kill`` polls first, and that poll reaps a sandbox that has just exited on its own (its control
socket closed): asyncio's watcher then finds no child, logs "Unknown child process" and reports 255.
``Zygote.kill`` signals through a pidfd and never reaps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from codekiln.workloads.sandbox.isolation import Zygote


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_kill_signals_through_the_pidfd_without_reaping() -> None:
    child = subprocess.Popen(["sleep", "0.05"])
    pidfd = os.pidfd_open(child.pid)
    deadline = time.monotonic() + 10
    while _state(child.pid) != "Z" and time.monotonic() < deadline:  # exited, not yet reaped
        time.sleep(0.01)
    ctl, other = socket.socketpair()
    zyg = Zygote(proc=child, ctl=ctl, mode="session", pidfd=pidfd)
    try:
        zyg.kill()  # Popen.kill() here would reap the zombie through its poll
        assert _state(child.pid) == "Z", "kill() reaped the sandbox: the child watcher would lose its exit"
        assert os.waitpid(child.pid, 0) == (child.pid, 0)  # the exit is still there for its owner
    finally:
        os.close(pidfd)
        ctl.close()
        other.close()


def test_kill_stops_a_live_sandbox() -> None:
    child = subprocess.Popen(["sleep", "30"])
    ctl, other = socket.socketpair()
    zyg = Zygote(proc=child, ctl=ctl, mode="session", pidfd=os.pidfd_open(child.pid))
    try:
        zyg.kill()
        assert child.wait(10) == -9
    finally:
        os.close(zyg.pidfd)
        ctl.close()
        other.close()
