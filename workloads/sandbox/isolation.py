"""Isolated executions: warm bubblewrap sandboxes (``zygote.py``), limits, wall clock, output caps.

Each execution slot owns one *warm sandbox*: a bubblewrap sandbox (user, pid, mount, network,
ipc, uts and cgroup namespaces; read-only ``/usr`` and a few ``/etc`` files; an environment
built from scratch) running the trusted ``zygote.py``. A job is forked from it into fresh
mount, pid, network, ipc and uts namespaces with new size-capped tmpfs at ``/workspace``,
``/tmp`` and ``/dev/shm``, a nested user namespace (uid 1000), rlimits, no capabilities,
``no_new_privs`` and the seccomp filter — the isolation of a fresh ``bwrap`` per run at the
cost of a few forks. Input files travel as a manifest in a memfd; wanted files are collected
by the job's keeper after the program's namespace is gone; setup failures arrive on channels
the program never holds. Sessions use the same sandbox with one persistent workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import json
import logging
import os
import shutil
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from codekiln.workloads.sandbox.cgroups import SlotCgroups
from codekiln.workloads.sandbox.seccomp import filter_bytes

WORKSPACE = "/workspace"
SANDBOX_UID = 1000
_MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory",
                   b"OutOfMemoryError", b"heap out of memory", b"memory allocation of")
_CHUNK = 1 << 16
_MSG = 1 << 17
ETC_FILES = {
    "passwd": f"root:x:0:0::/:/bin/sh\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::{WORKSPACE}:/bin/sh\n"
              "nobody:x:65534:65534::/:/bin/sh\n",
    "group": f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n",
}


class SandboxUnavailable(RuntimeError):
    """bubblewrap or prlimit is missing, or namespaces cannot be created here."""


@dataclass(frozen=True)
class Limits:
    """Limits of one execution (already clamped to the server's caps)."""

    timeout_s: float
    memory_mb: int
    processes: int
    file_size_mb: int
    open_files: int
    workspace_mb: int
    tmp_mb: int
    max_output_bytes: int
    max_collect_bytes: int


@dataclass
class Execution:
    """What to run. ``files`` maps a path (relative to /workspace, or under /tmp) to (content, executable)."""

    argv: list[str]
    limits: Limits
    files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    stdin: bytes = b""
    binds: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    collect: list[str] | None = None  # paths to bring back ('.' = the whole workspace)
    uid: int | None = None  # host uid to run as (only when the server is root)
    slot: int | None = None  # execution slot (selects its memory cgroup, when cgroups are on)


@dataclass
class ExecResult:
    """What came back. ``status`` uses SandboxFusion's words: Finished | Error | TimeLimitExceeded."""

    status: str
    verdict: str
    return_code: int | None
    stdout: bytes
    stderr: bytes
    execution_time: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    executables: set[str] = field(default_factory=set)
    sandbox_error: str = ""


def _tool(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/bin:/usr/local/bin:/usr/sbin")
    if path is None:
        raise SandboxUnavailable(f"'{name}' is not installed (the sandbox needs bubblewrap and util-linux)")
    return path


def system_binds() -> list[str]:
    """bwrap arguments giving a read-only view of the system: /usr, its top-level links, a few /etc files."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + top
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for etc in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(etc):
            args += ["--ro-bind", etc, etc]
    return args


class SetupError(RuntimeError):
    """The sandbox could not be set up for one execution (reported on a channel the program never holds)."""


def _frame_header(first: bytes) -> tuple[int, int]:
    head_len, body_len = struct.unpack_from("<IQ", first)
    return head_len, body_len


async def recv_frame(sock: socket.socket, max_body: int) -> tuple[dict, bytes]:
    """One framed reply of the zygote (``<u32 head><u64 body>`` head body, in SEQPACKET messages)."""
    loop = asyncio.get_running_loop()
    first = await loop.sock_recv(sock, _MSG)
    if len(first) < 12:
        raise EOFError("the sandbox closed its channel")
    head_len, body_len = _frame_header(first)
    if head_len > _MSG * 16 or body_len > max_body + _MSG:
        raise SetupError(f"sandbox reply of {head_len}+{body_len} bytes exceeds the budget")
    buf = bytearray(first[12:])
    need = head_len + body_len
    while len(buf) < need:
        chunk = await loop.sock_recv(sock, _MSG)
        if not chunk:
            raise EOFError("the sandbox closed its channel mid-reply")
        buf += chunk
    return json.loads(bytes(buf[:head_len])), bytes(buf[head_len:need])


def limits_wire(lim: Limits) -> dict:
    return {"timeout_s": lim.timeout_s, "memory_mb": lim.memory_mb, "processes": lim.processes,
            "file_size_mb": lim.file_size_mb, "open_files": lim.open_files, "workspace_mb": lim.workspace_mb,
            "tmp_mb": lim.tmp_mb}


def bundle(files: dict[str, tuple[bytes, bool]], owned: list[int]) -> int:
    """A memfd with the input files as a manifest the zygote's keeper unpacks (linear in their size)."""
    fd = os.memfd_create("ck-files", 0)
    owned.append(fd)
    for path, (data, executable) in files.items():
        head = json.dumps({"p": path, "n": len(data), "x": executable}).encode()
        _write_all(fd, struct.pack("<I", len(head)) + head)
        _write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass
class Zygote:
    """Server-side handle of one warm sandbox (a bubblewrap sandbox running ``zygote.py``)."""

    proc: asyncio.subprocess.Process
    ctl: socket.socket
    mode: str
    slot: int | None = None
    jobs: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    log_task: asyncio.Future | None = None
    pidfd: int | None = None  # the outer bwrap, signalled without reaping it (asyncio's watcher reaps it)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def kill(self) -> None:
        """SIGKILL the sandbox. Through its pidfd: ``Popen.kill`` polls first and could reap the exit before
        asyncio's child watcher does (which then logs an unknown child and reports 255)."""
        if self.proc.returncode is not None:
            return
        if self.pidfd is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            return
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    async def close(self) -> None:
        """Stop the sandbox: closing the control socket ends the zygote; SIGKILL makes sure."""
        with contextlib.suppress(OSError):
            self.ctl.close()
        self.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None

    async def op(self, req: dict, data: bytes | None = None, max_body: int = 64 << 20) -> tuple[dict, bytes]:
        """A file operation answered by the zygote itself (sessions: read, write, list, snapshot, diff)."""
        owned: list[int] = []
        try:
            fds = []
            if data is not None:
                fds.append(_memfd("ck-data", data, owned))
                req = {**req, "size": len(data)}
            async with self.lock:
                try:
                    socket.send_fds(self.ctl, [json.dumps(req, ensure_ascii=False).encode()], fds)
                    return await asyncio.wait_for(recv_frame(self.ctl, max_body), 60)
                except (OSError, EOFError, TimeoutError, ValueError) as exc:
                    raise SetupError(f"the warm sandbox failed: {type(exc).__name__}: {exc}") from exc
        finally:
            for fd in owned:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def run(self, ex: Execution, spec: dict, cgroup_oom=None) -> ExecResult:
        """Run one execution in a fresh set of namespaces forked from this zygote."""
        lim = ex.limits
        owned: list[int] = []
        job_srv, job_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        job_srv.setblocking(False)
        try:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            owned += [stdin_r, stdin_w, out_r, out_w, err_r, err_w]
            fds = [job_child.fileno(), stdin_r, out_w, err_w]
            if ex.files:
                fds.append(bundle(ex.files, owned))
            req = {"op": "run", "limits": limits_wire(lim), "env": spec["env"], "argv": list(ex.argv),
                   "python_main": spec.get("python_main"), "collect": ex.collect,
                   "collect_bytes": lim.max_collect_bytes, "collect_files": spec.get("collect_files", 1024),
                   "cwd": spec.get("cwd")}
            start = time.monotonic()
            try:
                socket.send_fds(self.ctl, [json.dumps(req, ensure_ascii=False).encode()], fds)
            except OSError as exc:
                raise SetupError(f"the warm sandbox did not take the job: {exc}") from exc
            self.jobs += 1
            job_child.close()
            for fd in (stdin_r, out_w, err_w):
                owned.remove(fd)
                os.close(fd)
            if len(fds) > 4:
                owned.remove(fds[4])
                os.close(fds[4])
            return await self._supervise(ex, job_srv, stdin_w, out_r, err_r, owned, start)
        finally:
            job_srv.close()
            with contextlib.suppress(OSError):
                job_child.close()
            for fd in owned:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def _supervise(self, ex, job, stdin_w, out_r, err_r, owned, start) -> ExecResult:
        lim = ex.limits
        overflow = asyncio.Event()
        out = _Capture(lim.max_output_bytes, overflow)
        err = _Capture(lim.max_output_bytes, overflow)
        for fd in (out_r, err_r, stdin_w):
            owned.remove(fd)
        tasks = [asyncio.ensure_future(_drain_fd(out_r, out)), asyncio.ensure_future(_drain_fd(err_r, err)),
                 asyncio.ensure_future(_feed_fd(stdin_w, ex.stdin))]
        backstop = lim.timeout_s + 15
        try:
            # One frame comes back: the end of the run, or a setup failure (never written by the program).
            reply = asyncio.ensure_future(recv_frame(job, lim.max_collect_bytes))
            ovf = asyncio.ensure_future(overflow.wait())
            done, _ = await asyncio.wait({reply, ovf}, timeout=backstop, return_when=asyncio.FIRST_COMPLETED)
            if reply not in done:
                with contextlib.suppress(OSError):
                    # Over the output cap: EOF tells the keeper to kill the namespace (no data left unread).
                    job.shutdown(socket.SHUT_WR)
                done, _ = await asyncio.wait({reply}, timeout=backstop)
            ovf.cancel()
            if reply not in done:
                reply.cancel()
                raise SetupError("the sandbox did not report the end of the run")
            head, body = reply.result()
            if head.get("ev") != "exit":
                return _setup_failed(head.get("error") or "sandbox setup failed", time.monotonic() - start)
        except (TimeoutError, EOFError, OSError, SetupError, ValueError) as exc:
            for t in tasks:
                t.cancel()
            raise SetupError(f"warm sandbox failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await asyncio.wait(tasks, timeout=5)
            for t in tasks:
                t.cancel()
        files: dict[str, bytes] = {}
        executables: set[str] = set()
        pos = 0
        for path, size, executable in head.get("files", []):
            files[path] = body[pos:pos + size]
            pos += size
            if executable:
                executables.add(path)
        return _verdict(head, out, err, overflow.is_set(), files, executables)


def _setup_failed(message: str, elapsed: float) -> ExecResult:
    return ExecResult(status="Error", verdict="SandboxError", return_code=None, stdout=b"", stderr=b"",
                      execution_time=round(elapsed, 4), sandbox_error=message[-2000:])


def _verdict(head: dict, out: _Capture, err: _Capture, overflow: bool, files, executables) -> ExecResult:
    rc = head.get("code")
    res = ExecResult(status="Finished", verdict="OK", return_code=rc, stdout=out.data, stderr=err.data,
                     execution_time=round(float(head.get("elapsed", 0.0)), 4), stdout_truncated=out.truncated,
                     stderr_truncated=err.truncated, files=files, executables=executables)
    if head.get("timed_out"):
        res.status, res.verdict, res.return_code = "TimeLimitExceeded", "TimeLimitExceeded", None
    elif overflow:
        res.status, res.verdict = "Error", "OutputLimitExceeded"
    elif rc == 128 + signal.SIGXCPU:
        res.status, res.verdict = "TimeLimitExceeded", "TimeLimitExceeded"
    elif rc != 0:
        res.verdict = "MemoryLimitExceeded" if any(m in err.data for m in _MEMORY_MARKERS) else "RuntimeError"
    if head.get("collect_error") and res.verdict == "OK":
        res.verdict, res.status = "OutputLimitExceeded", "Error"
        res.stderr += f"\n[sandbox] {head['collect_error']}".encode()
    return res


ZYGOTE_SOURCE = (Path(__file__).parent / "zygote.py").read_text()


@dataclass
class Isolator:
    """Starts warm sandboxes (bubblewrap + ``zygote.py``) and runs executions in them.

    ``work_dir`` is the only host directory the server uses (a probe; workspaces live in
    tmpfs mounts inside the sandboxes' mount namespaces and never touch the host disk).
    """

    work_dir: str
    bwrap: str = field(default_factory=lambda: _tool("bwrap"))
    python: str = field(default_factory=lambda: _tool("python3"))
    _system: list[str] = field(default_factory=system_binds)
    seccomp: bytes | None = field(default_factory=filter_bytes)
    cgroups: SlotCgroups | None = None
    binds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        self.reaper = Reaper()

    def command(self, ctl_fd: int, seccomp_fd: int, etc_fds: dict[str, int], mode: str,
                workspace_mb: int = 1, tmp_mb: int = 1, env: dict[str, str] | None = None) -> list[str]:
        """bwrap argv of a warm sandbox: uid 0 with capabilities inside its own user namespace only."""
        mib = 1 << 20
        argv = [self.bwrap, "--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "ALL",
                "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        argv += self._system
        for src in self.binds:
            argv += ["--ro-bind", src, src]
        for name, fd in etc_fds.items():
            argv += ["--ro-bind-data", str(fd), "/etc/" + name]
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(tmp_mb * mib), "--perms", "1777", "--tmpfs", "/tmp",
                 "--size", str(workspace_mb * mib), "--perms", "0755", "--tmpfs", WORKSPACE]
        if mode == "session":
            argv += ["--size", str(workspace_mb * mib), "--perms", "0700", "--tmpfs", "/.ck"]
        argv += ["--chdir", WORKSPACE, "--clearenv"]
        for key, value in base_env(env).items():
            argv += ["--setenv", key, value]
        return argv + ["--", self.python, "-u", "-c", ZYGOTE_SOURCE, str(ctl_fd), str(seccomp_fd), mode,
                       str(workspace_mb), str(tmp_mb)]

    async def start(self, mode: str = "oneshot", *, uid: int | None = None, slot: int | None = None,
                    workspace_mb: int = 1, tmp_mb: int = 1, env: dict[str, str] | None = None) -> Zygote:
        """Start one warm sandbox (``oneshot``: fresh namespaces and tmpfs per job; ``session``: one workspace)."""
        owned: list[int] = []
        srv, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            etc_fds = {name: _memfd("ck-etc", text.encode(), owned) for name, text in ETC_FILES.items()}
            seccomp_fd = _memfd("ck-seccomp", self.seccomp, owned) if self.seccomp is not None else -1
            argv = self.command(child.fileno(), seccomp_fd, etc_fds, mode, workspace_mb, tmp_mb, env)
            if self.cgroups is not None and self.cgroups.enabled and slot is not None:
                procs = self.cgroups.procs(slot)
                argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *argv]
            kwargs = {}
            if uid is not None:
                kwargs = {"user": uid, "group": uid, "extra_groups": []}
            pass_fds = [child.fileno(), *etc_fds.values()] + ([seccomp_fd] if seccomp_fd >= 0 else [])
            self.reaper.spawning += 1
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    env={}, cwd="/", pass_fds=pass_fds, start_new_session=True, **kwargs)
                self.reaper.managed.add(proc.pid)
            finally:
                self.reaper.spawning -= 1
        finally:
            child.close()
            for fd in owned:
                with contextlib.suppress(OSError):
                    os.close(fd)
        srv.setblocking(False)
        zyg = Zygote(proc=proc, ctl=srv, mode=mode, slot=slot)
        with contextlib.suppress(OSError, AttributeError):  # Linux ≥ 5.3; otherwise Popen.kill
            zyg.pidfd = os.pidfd_open(proc.pid)
        try:
            head, _ = await asyncio.wait_for(zyg.op({"op": "ping"}), 30)
        except (TimeoutError, EOFError, OSError, ValueError, SetupError) as exc:
            await zyg.close()
            err = b""
            with contextlib.suppress(Exception):
                err = await asyncio.wait_for(proc.stderr.read(4000), 2)
            raise SandboxUnavailable(f"the warm sandbox did not start: {err.decode(errors='replace').strip() or exc}"
                                     f" (bwrap exited with {proc.returncode})") from exc
        if not head.get("ok"):
            await zyg.close()
            raise SandboxUnavailable(f"the warm sandbox did not start: {head}")
        zyg.log_task = asyncio.ensure_future(_log_stderr(proc.stderr))
        return zyg


async def _log_stderr(stream: asyncio.StreamReader) -> None:
    """Forward a warm sandbox's own messages (bwrap, zygote) to the server log, bounded per line."""
    log = logging.getLogger("codekiln.sandbox.zygote")
    with contextlib.suppress(Exception):
        while True:
            line = await stream.readline()
            if not line:
                return
            log.warning("%s", line[:2000].decode(errors="replace").rstrip())


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every sandboxed program, built from scratch."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKSPACE, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
            "USER": "sandbox", **(extra or {})}


class _Capture:
    """Keeps the first ``cap`` bytes of a stream; ``overflow`` is set when more arrives."""

    def __init__(self, cap: int, overflow: asyncio.Event | None):
        self.cap, self.overflow = cap, overflow
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while True:
            chunk = await stream.read(_CHUNK)
            if not chunk:
                return
            if self._add(chunk) and self.overflow is not None:
                self.overflow.set()

    def _add(self, chunk: bytes) -> bool:
        room = self.cap - self.size
        if room > 0:
            self.parts.append(chunk[:room])
            self.size += min(room, len(chunk))
        if len(chunk) > room:
            self.truncated = True
        return self.truncated

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


async def _drain_fd(fd: int, capture: _Capture) -> None:
    """Read a pipe end we own into ``capture`` without a thread; the fd is closed afterwards."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK)
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    try:
        await capture.drain(reader)
    finally:
        transport.close()


class Reaper:
    """Reaps sandbox inits orphaned by their outer bwrap.

    The outer bwrap exits as soon as it learns the program's exit code, sometimes before its
    namespace init has been reaped; that init is re-parented to the nearest subreaper. The server
    makes itself one (so, as a container's pid 1, it does not collect zombies) and reaps exactly
    those children it did not spawn through asyncio.
    """

    def __init__(self) -> None:
        self.managed: set[int] = set()
        self.spawning = 0
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def reap(self) -> int:
        """Reap finished children that are not asyncio's; returns how many."""
        reaped = 0
        if self.spawning:
            return 0
        for pid in _children():
            if pid in self.managed:
                continue
            with contextlib.suppress(ChildProcessError, OSError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                reaped += done == pid
        return reaped


def _children() -> set[int]:
    pids: set[int] = set()
    for path in glob.glob("/proc/self/task/*/children"):
        with contextlib.suppress(OSError, ValueError), open(path) as fh:
            pids.update(int(p) for p in fh.read().split())
    return pids


def _memfd(name: str, data: bytes, owned: list[int]) -> int:
    """A memfd holding ``data``, positioned at its start (closed with the other ``owned`` fds)."""
    fd = os.memfd_create(name, 0)
    owned.append(fd)
    _write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _abs(path: str) -> str:
    return path if path.startswith("/") else f"{WORKSPACE}/{path}"


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


async def _feed_fd(fd: int, data: bytes) -> None:
    """Write ``data`` to a pipe end we own (the program's stdin), then close it; a reader that quits is fine."""
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(fd, "wb", buffering=0)
    try:
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    except BaseException:
        pipe.close()
        raise
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        if data:
            writer.write(data)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        transport.close()
