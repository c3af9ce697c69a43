"""Sandbox sessions for rollouts: one isolated workspace per rollout on the sandbox server.

Wraps the sandbox's async ``SessionClient`` (``workloads/sandbox``): ``open`` creates a session
from the task's repository snapshot (text files as ``files``, binary ones as ``files_b64``) and
runs its setup commands there; the session is closed by the rollout loop when the rollout ends,
and the server reaps it after ``ttl`` if the trainer dies first. In a cluster the URL is the
SandboxPool's Service (``CODEKILN_SANDBOX_URL``); locally a ``codekiln sandbox serve`` process.
"""

from __future__ import annotations

from codekiln.workloads.rl.agent.tasks import SweTask, snapshot_payload


class SandboxSessions:
    """Opens sessions on a sandbox server (an async context manager around one HTTP client).

    Args:
        url: the sandbox server's base URL.
        ttl_s: session time to live.
        limits: per-session limits (``cpu_seconds``, ``memory_mb``, ``pids``, ``disk_mb``), server defaults if None.
    """

    def __init__(self, url: str, ttl_s: float = 900.0, limits: dict | None = None) -> None:
        self.url, self.ttl_s, self.limits = url, ttl_s, limits
        self._client = None

    async def __aenter__(self) -> SandboxSessions:
        from codekiln.workloads.sandbox.sessions_client import SessionClient

        self._client = SessionClient(self.url)
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(*exc)

    async def open(self, task: SweTask, snapshot: dict[str, bytes]):
        """A new session holding the task's repository (setup commands already run)."""
        if self._client is None:
            raise RuntimeError("SandboxSessions.open outside 'async with'")
        kwargs = {**snapshot_payload(snapshot), "setup_commands": list(task.setup_commands),
                  "ttl_seconds": self.ttl_s}
        if self.limits:
            kwargs["limits"] = self.limits
        try:
            return await self._client.create(**kwargs)
        except Exception as exc:
            if getattr(exc, "status", None) == 429:
                raise ValueError(f"sandbox {self.url}: {getattr(exc, 'message', exc)} — lower "
                                 "agent.maxParallelRollouts to the sandbox's live-session cap (or raise the "
                                 "SandboxPool's sessions.maxSessions)") from None
            raise
