"""Child-process helpers shared by the local launchers (workloads/llm/local.py, workloads/sandbox/local.py)."""

from __future__ import annotations

import contextlib
import signal
import subprocess


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; close the pipes the parent holds.

    Args:
        proc: the child process (may already have exited).
        grace_s: seconds to wait after SIGTERM before SIGKILL.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
