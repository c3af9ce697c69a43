"""Stateful sandbox sessions: an isolated workspace that lives across many commands.

A session is its own warm sandbox (``zygote.py`` in ``session`` mode): a bubblewrap sandbox with
its own user, pid, mount, network, ipc and uts namespaces and a size-capped tmpfs
``/workspace`` (``disk_mb``) that persists between commands. Each command is forked into a
fresh pid namespace (and a copy of the session's mount namespace) with the session's rlimits,
no capabilities, ``no_new_privs`` and the seccomp filter of one-shot runs; its namespace init's
exit kills everything it started. File reads, writes, listings and the diff against the
initial snapshot are answered by the session's trusted zygote, which never follows a symlink.

Sessions are closed by ``DELETE``, after ``ttl_seconds``, or after ``idle_timeout_seconds``
without use. Nothing of a session touches the host disk, and its sandbox dies with the server
(``--die-with-parent``), so a restart or crash leaks neither processes nor directories.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import secrets
import tarfile
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from codekiln.workloads.sandbox.config import SandboxConfig
from codekiln.workloads.sandbox.executor import NAME_MAX, RequestError, sandbox_path
from codekiln.workloads.sandbox.isolation import WORKSPACE, Execution, Isolator, Limits, SetupError, Zygote, base_env

# Files in a session change between commands, often within one second and at the same size (a one-token fix):
# CPython's .pyc check (source mtime in whole seconds + size) would then run the stale bytecode.
SESSION_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionLimitsRequest(_Wire):
    cpu_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                      description="Default timeout of one command, seconds.")
    memory_mb: int | None = Field(default=None, gt=0, description="Memory per process, MiB.")
    pids: int | None = Field(default=None, gt=0, description="Processes per command.")
    disk_mb: int | None = Field(default=None, gt=0, description="Workspace size, MiB.")


class SessionCreate(_Wire):
    """``POST /sessions``."""

    files: dict[str, str] = Field(default_factory=dict, description="relpath -> UTF-8 text.")
    files_b64: dict[str, str] = Field(default_factory=dict, description="relpath -> base64.")
    archive_b64: str | None = Field(default=None, description="A tar or tar.gz of the initial workspace.")
    setup_commands: list[str] = Field(default_factory=list, max_length=32)
    ttl_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    idle_timeout_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    limits: SessionLimitsRequest = Field(default_factory=SessionLimitsRequest)


class SessionRun(_Wire):
    """``POST /sessions/{id}/run``."""

    command: str = Field(min_length=1, max_length=32000,
                         description="bash -lc argument (one execve string: at most 128 KiB once UTF-8 encoded).")
    stdin: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_output_bytes: int | None = Field(default=None, gt=0)


class FileWrite(_Wire):
    """``PUT /sessions/{id}/files``."""

    path: str
    content: str | None = None
    content_b64: str | None = None


class SessionError(RequestError):
    """404 for unknown sessions, 429 at the live-session cap."""


@dataclass
class Session:
    session_id: str
    zygote: Zygote
    limits: Limits
    created_at: float
    expires_at: float
    idle_timeout_s: float
    index: int
    last_used: float = field(default_factory=time.time)
    commands: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    def info(self) -> dict:
        return {"session_id": self.session_id, "created_at": self.created_at, "expires_at": self.expires_at,
                "commands": self.commands, "limits": _limits_info(self.limits)}


def _limits_info(lim: Limits) -> dict:
    return {"cpu_seconds": lim.timeout_s, "memory_mb": lim.memory_mb, "pids": lim.processes,
            "disk_mb": lim.workspace_mb}


class SessionManager:
    """Live sessions of one server: create, run, files, diff, close, and reaping."""

    def __init__(self, config: SandboxConfig, isolator: Isolator, uid_of_index, max_memory_mb: int, metrics=None):
        self.config = config
        self.cfg = config.sessions
        self.isolator = isolator
        self.uid_of_index = uid_of_index
        self.max_memory_mb = max_memory_mb
        self.metrics = metrics
        self.sessions: dict[str, Session] = {}
        self._free = list(range(self.cfg.max_sessions))
        self._starting = 0

    # ------------------------------------------------------------ lifecycle
    async def create(self, req: SessionCreate) -> tuple[Session, list[dict]]:
        cfg = self.cfg
        if len(self.sessions) + self._starting >= cfg.max_sessions or not self._free:
            raise SessionError(f"sessions: {cfg.max_sessions} live sessions (the limit); close one or retry later",
                               429, "sessions")
        lim = self._limits(req.limits)
        ttl = req.ttl_seconds or cfg.ttl_s
        if ttl > cfg.max_ttl_s:
            raise RequestError(f"ttl_seconds: {ttl} exceeds the server limit of {cfg.max_ttl_s}", 422)
        idle = req.idle_timeout_seconds or cfg.idle_timeout_s
        files = self._initial_files(req)
        index = self._free.pop()
        self._starting += 1
        try:
            cg_slot = self._cgroup_slot(index)
            if cg_slot is not None:  # root with cgroups: one memory limit for the whole session
                self.isolator.cgroups.prepare(cg_slot, (lim.memory_mb + lim.workspace_mb + lim.tmp_mb + 128) << 20)
            zyg = await self.isolator.start("session", uid=self.uid_of_index(index), slot=cg_slot,
                                            workspace_mb=lim.workspace_mb, tmp_mb=min(lim.workspace_mb, 256))
        except BaseException:
            self._free.append(index)
            raise
        finally:
            self._starting -= 1
        now = time.time()
        session = Session(secrets.token_hex(12), zyg, lim, now, now + ttl, idle, index)
        self.sessions[session.session_id] = session
        self._gauge()
        setup = []
        try:
            if files:
                res = await zyg.run(Execution(argv=["/bin/true"], limits=lim, files=files),
                                    {"env": base_env(SESSION_ENV), "cwd": WORKSPACE})
                if res.verdict != "OK":
                    raise RequestError(f"files: could not be written to the workspace ({res.sandbox_error or ''}"
                                       f"{res.stderr[-300:].decode(errors='replace')})", 413)
            for i, command in enumerate(req.setup_commands):
                out = await self._run(session, SessionRun(command=command))
                setup.append(out)
                if out["status"] != "Finished" or out["exit_code"] != 0:
                    raise RequestError(f"setup_commands[{i}]: exited with {out['exit_code']} ({out['status']}): "
                                       f"{(out['stderr'] or out['stdout'])[-500:]}", 422, "setup_commands")
            head, _ = await self._op(session, {"op": "snapshot"})
            if head.get("error"):
                raise RequestError(f"files: the initial snapshot failed: {head['error']}", 413)
        except BaseException:
            await self.close(session.session_id, "failed")
            raise
        return session, setup

    async def close(self, session_id: str, reason: str = "closed") -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        session.closed = True
        await session.zygote.close()
        self._free.append(session.index)
        self._gauge()
        if self.metrics is not None and reason in ("ttl", "idle", "dead"):
            self.metrics.sessions_reaped.labels(reason).inc()

    async def close_all(self) -> None:
        for sid in list(self.sessions):
            await self.close(sid, "shutdown")

    async def reap(self) -> int:
        """Close sessions past their TTL or idle timeout, or whose sandbox died; returns how many."""
        now = time.time()
        n = 0
        for sid, s in list(self.sessions.items()):
            reason = None
            if now >= s.expires_at:
                reason = "ttl"
            elif now - s.last_used >= s.idle_timeout_s and not s.lock.locked():
                reason = "idle"
            elif not s.zygote.alive:
                reason = "dead"
            if reason:
                await self.close(sid, reason)
                n += 1
        return n

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            raise SessionError("session_id: unknown or expired session", 404, "session_id")
        session.last_used = time.time()
        return session

    # ------------------------------------------------------------ commands and files
    async def run(self, session_id: str, req: SessionRun) -> dict:
        session = self.get(session_id)
        return await self._run(session, req)

    async def _run(self, session: Session, req: SessionRun) -> dict:
        cfg = self.cfg
        timeout = req.timeout_seconds or session.limits.timeout_s
        if timeout > cfg.max_command_timeout_s:
            raise RequestError(f"timeout_seconds: {timeout} exceeds the server limit of {cfg.max_command_timeout_s}",
                               422)
        cap = min(req.max_output_bytes or cfg.max_output_bytes, cfg.max_output_bytes)
        lim = Limits(timeout_s=float(timeout), memory_mb=session.limits.memory_mb, processes=session.limits.processes,
                     file_size_mb=session.limits.file_size_mb, open_files=session.limits.open_files,
                     workspace_mb=session.limits.workspace_mb, tmp_mb=session.limits.tmp_mb, max_output_bytes=cap,
                     max_collect_bytes=0)
        ex = Execution(argv=["/bin/bash", "-lc", req.command], limits=lim, stdin=(req.stdin or "").encode())
        cg_slot = self._cgroup_slot(session.index)
        async with session.lock:
            start = time.monotonic()
            oom_before = self.isolator.cgroups.oom_kills(cg_slot) if cg_slot is not None else 0
            try:
                res = await session.zygote.run(ex, {"env": base_env(SESSION_ENV), "cwd": WORKSPACE})
                if cg_slot is not None and self.isolator.cgroups.oom_kills(cg_slot) > oom_before:
                    res.verdict = "MemoryLimitExceeded"
            except SetupError as exc:
                await self.close(session.session_id, "dead")
                return {"status": "SandboxError", "exit_code": None, "stdout": "", "stderr": str(exc),
                        "duration_ms": round(1000 * (time.monotonic() - start), 1), "truncated": False}
            session.commands += 1
            session.last_used = time.time()
        if self.metrics is not None:
            self.metrics.session_commands.inc()
        status = {"OK": "Finished", "RuntimeError": "Finished"}.get(res.verdict, res.verdict)
        return {"status": status, "exit_code": res.return_code, "stdout": res.stdout.decode(errors="replace"),
                "stderr": res.stderr.decode(errors="replace") if res.verdict != "SandboxError" else res.sandbox_error,
                "duration_ms": round(1000 * (time.monotonic() - start), 1),
                "truncated": res.stdout_truncated or res.stderr_truncated}

    async def read_file(self, session_id: str, path: str) -> dict:
        session = self.get(session_id)
        rel = session_path(path)
        head, data = await self._op(session, {"op": "read", "path": rel, "max_bytes": self.cfg.max_file_bytes},
                                    max_body=self.cfg.max_file_bytes)
        _raise_op_error(head, "path")
        out = {"path": rel, "size": len(data)}
        try:
            out["content"] = data.decode()
        except UnicodeDecodeError:
            out["content_b64"] = base64.b64encode(data).decode()
        return out

    async def write_file(self, session_id: str, req: FileWrite) -> dict:
        session = self.get(session_id)
        rel = session_path(req.path)
        if (req.content is None) == (req.content_b64 is None):
            raise RequestError("content: give exactly one of content and content_b64", 422, "content")
        data = req.content.encode() if req.content is not None else _b64(req.content_b64, "content_b64")
        if len(data) > self.cfg.max_file_bytes:
            raise RequestError(f"content: {len(data)} bytes exceed the limit of {self.cfg.max_file_bytes}", 413)
        head, _ = await self._op(session, {"op": "write", "path": rel}, data)
        _raise_op_error(head, "path")
        return {"path": rel, "size": head.get("size", len(data))}

    async def list_files(self, session_id: str, path: str | None) -> dict:
        session = self.get(session_id)
        rel = session_path(path) if path not in (None, "", ".", "/workspace", "/workspace/") else "."
        head, _ = await self._op(session, {"op": "list", "path": rel, "max_entries": 10000})
        _raise_op_error(head, "path")
        return {"entries": head["entries"]}

    async def diff(self, session_id: str) -> dict:
        session = self.get(session_id)
        head, data = await self._op(session, {"op": "diff", "max_bytes": 4 << 20}, max_body=8 << 20)
        _raise_op_error(head, "session_id")
        return {"diff": data.decode(errors="replace")}

    # ------------------------------------------------------------ helpers
    async def _op(self, session: Session, req: dict, data: bytes | None = None,
                  max_body: int = 64 << 20) -> tuple[dict, bytes]:
        """A file operation of the session's sandbox; a dead sandbox closes the session (404 from then on)."""
        try:
            return await session.zygote.op(req, data, max_body)
        except SetupError as exc:
            await self.close(session.session_id, "dead")
            raise SessionError(f"session_id: the session's sandbox ended ({exc})", 404, "session_id") from exc

    def _limits(self, req: SessionLimitsRequest) -> Limits:
        cfg, base = self.cfg, self.config.limits
        memory = req.memory_mb or min(cfg.memory_mb, self.max_memory_mb)
        disk = req.disk_mb or cfg.disk_mb
        pids = req.pids or cfg.pids
        cpu = req.cpu_seconds or cfg.cpu_seconds
        for name, value, cap in (("limits.memory_mb", memory, min(cfg.max_memory_mb, self.max_memory_mb)),
                                 ("limits.disk_mb", disk, cfg.max_disk_mb), ("limits.pids", pids, cfg.max_pids),
                                 ("limits.cpu_seconds", cpu, cfg.max_command_timeout_s)):
            if value > cap:
                raise RequestError(f"{name}: {value} exceeds the server limit of {cap}", 422, name)
        return Limits(timeout_s=float(cpu), memory_mb=int(memory), processes=int(pids),
                      file_size_mb=max(1, min(int(disk), base.max_file_size_mb * 8)), open_files=base.max_open_files,
                      workspace_mb=int(disk), tmp_mb=min(int(disk), 256), max_output_bytes=cfg.max_output_bytes,
                      max_collect_bytes=0)

    def _initial_files(self, req: SessionCreate) -> dict[str, tuple[bytes, bool]]:
        out: dict[str, tuple[bytes, bool]] = {}
        total = 0
        cap = self.cfg.max_upload_bytes
        limit_files = 100000

        def add(path: str, data: bytes, executable: bool, fld: str) -> None:
            nonlocal total
            rel = session_path(path, fld)
            total += len(data)
            if total > cap:
                raise RequestError(f"{fld}: the initial files exceed {cap} bytes", 413, fld)
            if len(out) >= limit_files:
                raise RequestError(f"{fld}: more than {limit_files} files", 413, fld)
            out[rel] = (data, executable)

        if req.archive_b64:
            raw = _b64(req.archive_b64, "archive_b64")
            if len(raw) > cap:
                raise RequestError(f"archive_b64: {len(raw)} bytes exceed {cap}", 413)
            try:
                with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
                    for member in tar:
                        if member.isdir():
                            continue
                        if not member.isreg():
                            raise RequestError(f"archive_b64: {member.name!r} is not a regular file or directory "
                                               "(links and devices are refused)", 422, "archive_b64")
                        if total + member.size > cap:
                            raise RequestError(f"archive_b64: unpacks to more than {cap} bytes", 413, "archive_b64")
                        fh = tar.extractfile(member)
                        add(member.name, fh.read() if fh else b"", bool(member.mode & 0o111), "archive_b64")
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise RequestError(f"archive_b64: not a readable tar archive ({exc})", 422) from exc
        for path, text in req.files.items():
            add(path, text.encode(), False, "files")
        for path, b64 in req.files_b64.items():
            add(path, _b64(b64, f"files_b64[{path!r}]"), False, "files_b64")
        return out

    def _cgroup_slot(self, index: int) -> int | None:
        cg = self.isolator.cgroups
        return self.config.max_concurrency + index if cg is not None and cg.enabled else None

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.sessions_live.set(len(self.sessions))


def session_path(path: str | None, fld: str = "path") -> str:
    """A workspace-relative path (``/workspace/...`` accepted); traversal, /tmp and absolute paths → 422."""
    if path is None or path == "":
        raise RequestError(f"{fld}: missing", 422, fld)
    if "\x00" in path:
        raise RequestError(f"{fld}: NUL byte in path", 422, fld)
    if path.startswith("/tmp/"):
        raise RequestError(f"{fld}: {path!r} must be inside {WORKSPACE}", 422, fld)
    try:
        rel = sandbox_path(path, fld)
    except RequestError as exc:
        raise RequestError(str(exc), 422, fld) from exc
    parts = rel.split("/")
    if len(rel.encode()) > 4000 or any(len(p.encode()) > NAME_MAX for p in parts) or len(parts) > 64:
        raise RequestError(f"{fld}: path too long or too deep", 422, fld)
    return rel


def _b64(text: str, fld: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{fld}: not valid base64 ({exc})", 422, fld) from exc


def _raise_op_error(head: dict, fld: str) -> None:
    err = head.get("error")
    if not err:
        return
    errno_ = head.get("errno")
    if head.get("too_large"):
        raise RequestError(f"{fld}: {err}", 413, fld)
    if errno_ == 2:
        raise RequestError(f"{fld}: {err}", 404, fld)
    raise RequestError(f"{fld}: {err}", 422, fld)


async def reap_forever(manager: SessionManager, interval_s: float = 1.0) -> None:
    """The reaper task of a server."""
    while True:
        await asyncio.sleep(interval_s)
        with contextlib.suppress(Exception):
            await manager.reap()

