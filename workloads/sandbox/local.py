"""Start a sandbox server in a subprocess on a free port (tests, RL runs, benchmarks)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

from codekiln.workloads.processes import stop_process
from codekiln.workloads.sandbox.config import SandboxConfig


@contextlib.contextmanager
def local_server(config: SandboxConfig | None = None, *, startup_timeout_s: float = 60.0,
                 env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m codekiln.workloads.sandbox serve`` on a free port; yields its base URL once ready.

    ``env`` adds variables to the server's environment. The server is stopped (SIGTERM, then
    SIGKILL) when the block exits.
    """
    with local_server_process(config, startup_timeout_s=startup_timeout_s, env=env) as (url, _):
        yield url


@contextlib.contextmanager
def local_server_process(config: SandboxConfig | None = None, *, startup_timeout_s: float = 60.0,
                         env: dict[str, str] | None = None, launcher: list[str] | None = None,
                         require_ready: bool = True) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like :func:`local_server`, yielding (base URL, the server process).

    ``launcher`` is prepended to the server's command line (e.g. a seccomp or cgroup wrapper);
    with ``require_ready=False`` a server that failed its self-check is yielded too.
    """
    config = (config or SandboxConfig()).model_copy(update={"host": "127.0.0.1", "port": 0})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(config.to_wire(), fh)
        path = fh.name
    proc = subprocess.Popen([*(launcher or []), sys.executable, "-m", "codekiln.workloads.sandbox", "serve",
                             "--config", path],
                            stdout=subprocess.PIPE, stderr=None, text=True, env={**os.environ, **(env or {})})
    try:
        url = _wait_listening(proc, startup_timeout_s, require_ready)
        if require_ready:
            wait_ready(url, proc, startup_timeout_s)
        yield url, proc
    finally:
        stop_process(proc, grace_s=10)  # stderr is inherited, so only stdout is a pipe to close
        os.unlink(path)


def _wait_listening(proc: subprocess.Popen, timeout_s: float, require_ready: bool = True) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sandbox server exited with {proc.wait()} before listening")
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "listening":
                if require_ready and not event.get("ready"):
                    raise RuntimeError(f"sandbox server is not ready: {event.get('error')}")
                return f"http://127.0.0.1:{event['port']}"
    raise TimeoutError("sandbox server did not start listening in time")


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Poll ``url``/readyz until it answers 200; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
            body = getattr(exc, "read", None)
            if body is not None:
                last = body().decode(errors="replace")
        time.sleep(0.1)
    raise RuntimeError(f"sandbox server at {url} not ready: {last}")
