"""Start ``codekiln serve MODEL_DIR`` in a subprocess on a free port (tests, local runs with ``llm.serve``)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from codekiln.workloads.processes import stop_process


def start_server(model_dir: str | Path, *, startup_timeout_s: float = 120.0, threads: int = 0,
                 model_name: str | None = None, module: str = "codekiln.workloads.llm") -> tuple[str, subprocess.Popen]:
    """Start the server; return (base URL ending in /v1, process) once it listens.

    ``module`` is what ``python -m`` runs with ``serve MODEL_DIR``: this package, or the CLI
    (``codekiln.operator.cli``, i.e. ``codekiln serve``).
    """
    argv = [sys.executable, "-m", module, "serve", str(model_dir), "--port", "0"]
    if threads:
        argv += ["--threads", str(threads)]
    if model_name:
        argv += ["--model-name", model_name]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stdout is not None
    result: dict = {}

    def read() -> None:
        for line in proc.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "listening":
                    result["port"] = event["port"]
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(startup_timeout_s)
    if "port" not in result:
        stop_server(proc)
        err = proc.stderr.read()[-2000:] if proc.stderr else ""
        raise RuntimeError(f"codekiln serve {model_dir} did not start (exit {proc.returncode}): {err}")
    return f"http://127.0.0.1:{result['port']}/v1", proc


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    stop_process(proc, grace_s=10)


@contextlib.contextmanager
def local_llm_server(model_dir: str | Path, **kwargs) -> Iterator[str]:
    """Yield the base URL of a served model; stop it when the block exits."""
    url, proc = start_server(model_dir, **kwargs)
    try:
        yield url
    finally:
        stop_server(proc)


_SHARED: dict[str, tuple[str, subprocess.Popen]] = {}
_SHARED_LOCK = threading.Lock()


def shared_server(model_dir: str | Path) -> str:
    """One server per model folder for this process (started on first use, stopped at exit)."""
    key = str(Path(model_dir).resolve())
    with _SHARED_LOCK:
        if key in _SHARED and _SHARED[key][1].poll() is None:
            return _SHARED[key][0]
        url, proc = start_server(model_dir)
        _SHARED[key] = (url, proc)
        atexit.register(stop_server, proc)
        return url

