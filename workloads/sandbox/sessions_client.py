"""Async client of sandbox sessions (``/sessions``), for multi-turn agentic rollouts.

    async with SessionClient(base_url) as sc:
        s = await sc.create(files={"pkg/mod.py": src}, ttl_seconds=600)
        r = await s.run("pytest -q tests/test_x.py", timeout_seconds=30)
        await s.write_file("pkg/mod.py", fixed)
        text = await s.read_file("pkg/mod.py")
        entries = await s.list_files(".")
        patch = await s.diff()
        await s.close()

Behind a SandboxPool's Service, a session lives in one pod: the create answer names that pod's
``endpoint`` and the handle sends every later call of the session there.

A 4xx answer raises :class:`SessionRequestError` (``status``, ``field``, ``message``); 429 (the
live-session cap) and transport errors are retried with backoff on ``create`` only.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import httpx


class SessionRequestError(RuntimeError):
    """The server refused a session request; ``field`` names the offending input."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.field = status, message, field


@dataclass
class CommandResult:
    """One command; ``status``: Finished, TimeLimitExceeded, MemoryLimitExceeded, OutputLimitExceeded, SandboxError."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.status == "Finished" and self.exit_code == 0


class SessionClient:
    """Opens sessions on one sandbox server (or a Service in front of a SandboxPool)."""

    def __init__(self, base_url: str, *, timeout_s: float = 600.0, retries: int = 4):
        """Args:
        base_url: e.g. ``http://127.0.0.1:8080``.
        timeout_s: HTTP timeout of one call (a command's own timeout must be below it).
        retries: attempts of ``create`` on 429 / transport errors.
        """
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def __aenter__(self) -> SessionClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(self, *, files: dict[str, str] | None = None, files_b64: dict[str, str] | None = None,
                     archive: bytes | None = None, setup_commands: list[str] | None = None,
                     ttl_seconds: float | None = None, idle_timeout_seconds: float | None = None,
                     limits: dict[str, Any] | None = None) -> Session:
        """Create a session (files as text, base64, or a tar/tar.gz archive); returns its handle.

        Args:
            files: relative path -> UTF-8 text.
            files_b64: relative path -> base64 content.
            archive: bytes of a tar or tar.gz holding the initial workspace.
            setup_commands: run in order before the snapshot ``diff`` compares against.
            ttl_seconds / idle_timeout_seconds: lifetime and idle limit.
            limits: ``cpu_seconds``, ``memory_mb``, ``pids``, ``disk_mb``.
        """
        body: dict[str, Any] = {"files": files or {}, "files_b64": files_b64 or {},
                                "setup_commands": setup_commands or [], "limits": limits or {}}
        if archive is not None:
            body["archive_b64"] = base64.b64encode(archive).decode()
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if idle_timeout_seconds is not None:
            body["idle_timeout_seconds"] = idle_timeout_seconds
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                data = await self._call("POST", "/sessions", json=body)
                return Session(self, data["session_id"], data)
            except SessionRequestError as exc:
                if exc.status != 429 or attempt == self.retries:
                    raise
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    async def list(self) -> list[dict]:
        """Live sessions of this server."""
        return (await self._call("GET", "/sessions"))["sessions"]

    async def _call(self, method: str, path: str, **kwargs) -> dict:
        resp = await self._http.request(method, path, **kwargs)
        try:
            data = resp.json()
        except ValueError:
            data = {"message": resp.text[:500]}
        if resp.status_code >= 400:
            raise SessionRequestError(resp.status_code, data.get("message") or data.get("error") or resp.text[:500],
                                      data.get("field"))
        return data


class Session:
    """A live session: run commands, read/write/list files, diff, close (also as ``async with``)."""

    def __init__(self, client: SessionClient, session_id: str, info: dict):
        self.client, self.session_id, self.info = client, session_id, info
        base = (info.get("endpoint") or client.base_url).rstrip("/")
        self._prefix = f"{base}/sessions/{session_id}"

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def run(self, command: str, *, stdin: str | None = None, timeout_seconds: float | None = None,
                  max_output_bytes: int | None = None) -> CommandResult:
        """Run ``bash -lc command`` in ``/workspace``; state (files, installed packages) persists."""
        body: dict[str, Any] = {"command": command}
        if stdin is not None:
            body["stdin"] = stdin
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        if max_output_bytes is not None:
            body["max_output_bytes"] = max_output_bytes
        data = await self.client._call("POST", f"{self._prefix}/run", json=body)
        return CommandResult(data["status"], data.get("exit_code"), data.get("stdout") or "",
                             data.get("stderr") or "", data.get("duration_ms") or 0.0, bool(data.get("truncated")))

    async def read_file(self, path: str) -> str:
        """A file's text (binary files: use :meth:`read_bytes`)."""
        data = await self.client._call("GET", f"{self._prefix}/files", params={"path": path})
        if "content" in data:
            return data["content"]
        return base64.b64decode(data["content_b64"]).decode(errors="replace")

    async def read_bytes(self, path: str) -> bytes:
        data = await self.client._call("GET", f"{self._prefix}/files", params={"path": path})
        return data["content"].encode() if "content" in data else base64.b64decode(data["content_b64"])

    async def write_file(self, path: str, content: str | bytes) -> int:
        """Write (create or replace) a file; parents are created. Returns its size."""
        body: dict[str, Any] = {"path": path}
        if isinstance(content, bytes):
            body["content_b64"] = base64.b64encode(content).decode()
        else:
            body["content"] = content
        return (await self.client._call("PUT", f"{self._prefix}/files", json=body))["size"]

    async def list_files(self, path: str = ".") -> list[dict]:
        """Entries under ``path`` (recursive, bounded): ``{path, type, size}``."""
        return (await self.client._call("GET", f"{self._prefix}/list", params={"path": path}))["entries"]

    async def diff(self) -> str:
        """Unified diff of the workspace against its state right after creation."""
        return (await self.client._call("GET", f"{self._prefix}/diff"))["diff"]

    async def close(self) -> None:
        """Close the session (idempotent: an already closed or expired session is fine)."""
        try:
            await self.client._call("DELETE", self._prefix)
        except SessionRequestError as exc:
            if exc.status != 404:
                raise
