"""One isolated execution: bubblewrap namespaces + rlimits + wall clock + output caps.

Every execution gets fresh user, pid, mount, network, ipc, uts and cgroup namespaces, a
read-only view of ``/usr`` (and the few ``/etc`` files runtimes need), private size-capped
tmpfs mounts for ``/workspace``, ``/tmp`` and ``/dev/shm``, and an environment built from
scratch. Input files enter through memfds (``bwrap --file``), so nothing is staged on the
host disk; wanted output files leave as a tar stream on a pipe, parsed in memory.
Killing the outer ``bwrap`` kills the namespace's init, which makes the kernel kill every
process in the namespace, including double-forked daemons.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import io
import json
import math
import os
import shutil
import signal
import tarfile
import time
from dataclasses import dataclass, field

from codekiln.workloads.sandbox.cgroups import SlotCgroups
from codekiln.workloads.sandbox.seccomp import filter_bytes

WORKSPACE = "/workspace"
SANDBOX_UID = 1000
_MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory",
                   b"OutOfMemoryError", b"heap out of memory", b"memory allocation of")
_CHUNK = 1 << 16
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


@dataclass
class Isolator:
    """Builds and runs bwrap command lines; ``work_dir`` is the (only) host directory the server uses."""

    work_dir: str
    bwrap: str = field(default_factory=lambda: _tool("bwrap"))
    prlimit: str = field(default_factory=lambda: _tool("prlimit"))
    _system: list[str] = field(default_factory=system_binds)
    seccomp: bytes | None = field(default_factory=filter_bytes)
    cgroups: SlotCgroups | None = None

    def __post_init__(self) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        self.reaper = Reaper()

    def command(self, ex: Execution, fds: dict[str, tuple[int, bool]], collect_fd: int | None,
                status_fd: int, etc_fds: dict[str, int], seccomp_fd: int | None = None) -> list[str]:
        """The full argv: prlimit (rlimits) → bwrap (namespaces, mounts) → the program."""
        lim = ex.limits
        mib = 1 << 20
        cpu_s = math.ceil(lim.timeout_s) + 1
        argv = [self.prlimit, f"--data={lim.memory_mb * mib}", f"--nproc={lim.processes}",
                f"--fsize={lim.file_size_mb * mib}", f"--nofile={lim.open_files}", f"--cpu={cpu_s}:{cpu_s + 1}",
                "--core=0", "--memlock=0", "--msgqueue=0", "--", self.bwrap]
        argv += ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--hostname", "sandbox", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                 "--json-status-fd", str(status_fd)]
        if seccomp_fd is not None:
            argv += ["--seccomp", str(seccomp_fd)]
        argv += self._system
        for src in ex.binds:
            argv += ["--ro-bind", src, src]
        for name, fd in etc_fds.items():
            argv += ["--ro-bind-data", str(fd), "/etc/" + name]
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(lim.tmp_mb * mib), "--perms", "1777", "--tmpfs", "/dev/shm",
                 "--size", str(lim.tmp_mb * mib), "--perms", "1777", "--tmpfs", "/tmp",
                 "--size", str(lim.workspace_mb * mib), "--perms", "0755", "--tmpfs", WORKSPACE]
        made: set[str] = set()
        for path, (fd, executable) in fds.items():
            parent = os.path.dirname(path)
            chain = []
            while parent not in ("/", WORKSPACE, "/tmp", "") and parent not in made:
                chain.append(parent)
                parent = os.path.dirname(parent)
            for d in reversed(chain):
                argv += ["--perms", "0755", "--dir", d]
                made.add(d)
            mode = "0755" if executable else "0644"
            argv += ["--perms", mode, "--file", str(fd), path]
        argv += ["--chdir", WORKSPACE, "--clearenv"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKSPACE, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "USER": "sandbox", **ex.env}
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv.append("--")
        if ex.collect is not None and collect_fd is not None:
            # bash (not dash) because the pipe's fd number may be above 9.
            if ex.collect == ["."]:
                wanted = "-C . ."
            else:
                wanted = "--no-recursion " + (" ".join(_shell_quote(p) for p in ex.collect) or "--files-from=/dev/null")
            script = f'"$@"; rc=$?; cd {WORKSPACE} && tar -cf - {wanted} 2>/dev/null >&{collect_fd}; exit $rc'
            argv += [_tool("bash"), "-c", script, "bash"]
        return argv + list(ex.argv)

    async def run(self, ex: Execution) -> ExecResult:
        """Run one execution to completion (or to its wall-clock limit) and clean everything up."""
        owned: list[int] = []
        fds: dict[str, tuple[int, bool]] = {}
        try:
            for path, (content, executable) in ex.files.items():
                fds[_abs(path)] = (_memfd("ck-input", content, owned), executable)
            status_r, status_w = os.pipe()
            owned += [status_r, status_w]
            collect_r = collect_w = None
            if ex.collect is not None:
                collect_r, collect_w = os.pipe()
                owned += [collect_r, collect_w]
            etc_fds = {}
            for name, text in ETC_FILES.items():
                etc_fds[name] = _memfd("ck-etc", text.encode(), owned)
            seccomp_fd = None
            if self.seccomp is not None:
                seccomp_fd = _memfd("ck-seccomp", self.seccomp, owned)
            argv = self.command(ex, fds, collect_w, status_w, etc_fds, seccomp_fd)
            pass_fds = [fd for fd, _ in fds.values()] + [status_w, *etc_fds.values()]
            if seccomp_fd is not None:
                pass_fds.append(seccomp_fd)
            if collect_w is not None:
                pass_fds.append(collect_w)
            return await self._spawn(ex, argv, pass_fds, status_r, status_w, collect_r, collect_w, owned)
        finally:
            for fd in owned:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def _spawn(self, ex, argv, pass_fds, status_r, status_w, collect_r, collect_w, owned) -> ExecResult:
        kwargs = {}
        if ex.uid is not None:
            kwargs = {"user": ex.uid, "group": ex.uid, "extra_groups": []}
        oom_before = None
        if self.cgroups is not None and self.cgroups.enabled and ex.slot is not None:
            lim = ex.limits
            total = (lim.memory_mb + lim.workspace_mb + 2 * lim.tmp_mb + 64) << 20
            procs, oom_before = self.cgroups.prepare(ex.slot, total)
            # Join the slot's cgroup before anything else runs, so every descendant is in it.
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *argv]
        start = time.monotonic()
        # While a spawn is in flight its child is ours but not yet known: the reaper holds off.
        self.reaper.spawning += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={}, cwd="/", pass_fds=pass_fds, start_new_session=True, **kwargs)
            self.reaper.managed.add(proc.pid)
        finally:
            self.reaper.spawning -= 1
        try:
            res = await self._supervise(ex, proc, start, pass_fds, status_r, status_w, collect_r, collect_w, owned)
            if oom_before is not None and self.cgroups.oom_kills(ex.slot) > oom_before:
                res.verdict = "MemoryLimitExceeded"
                if res.status == "Finished" and res.return_code == 0:
                    res.status = "Error"  # a process of the run was killed for memory
            return res
        finally:
            self.reaper.managed.discard(proc.pid)
            self.reaper.reap()

    async def _supervise(self, ex, proc, start, pass_fds, status_r, status_w, collect_r, collect_w, owned):
        lim = ex.limits
        # The child holds its own copies now: close ours so EOF arrives when the sandbox ends.
        for fd in pass_fds:
            if fd in owned:
                owned.remove(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        overflow = asyncio.Event()
        out = _Capture(lim.max_output_bytes, overflow)
        err = _Capture(lim.max_output_bytes, overflow)
        coll = _Capture(lim.max_collect_bytes, None)
        tasks = [asyncio.ensure_future(out.drain(proc.stdout)), asyncio.ensure_future(err.drain(proc.stderr)),
                 asyncio.ensure_future(_feed(proc.stdin, ex.stdin))]
        status = _Capture(1 << 16, None)
        owned.remove(status_r)
        tasks.append(asyncio.ensure_future(_drain_fd(status_r, status)))
        if collect_r is not None:
            owned.remove(collect_r)
            tasks.append(asyncio.ensure_future(_drain_fd(collect_r, coll)))
        waiter = asyncio.ensure_future(proc.wait())
        overflow_wait = asyncio.ensure_future(overflow.wait())
        timed_out = False
        try:
            done, _ = await asyncio.wait({waiter, overflow_wait}, timeout=lim.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                timed_out = not overflow.is_set()
                await _terminate(proc, waiter, status)
        except asyncio.CancelledError:
            await asyncio.shield(_terminate(proc, waiter, status))
            raise
        finally:
            overflow_wait.cancel()
            elapsed = time.monotonic() - start
            await asyncio.wait(tasks, timeout=5)
            for t in tasks:
                t.cancel()
        return _result(proc.returncode, status.data, out, err, coll, coll.data, elapsed, timed_out,
                       overflow.is_set())


def _result(rc, status_text: bytes, out, err, coll, collected: bytes, elapsed: float, timed_out: bool,
            overflow: bool) -> ExecResult:
    # The program inherits the status pipe and could write to it: only "did it start" is read
    # from there; the exit code is the outer bwrap's own, which mirrors the program's.
    started, _ = _parse_status(status_text)
    res = ExecResult(status="Finished", verdict="OK", return_code=rc,
                     stdout=out.data, stderr=err.data, execution_time=round(elapsed, 4),
                     stdout_truncated=out.truncated, stderr_truncated=err.truncated)
    # bwrap reports its own setup failures (mounts, namespaces) as one "bwrap: ..." line and exit 1.
    setup_failed = rc == 1 and err.data.startswith(b"bwrap: ") and err.data.count(b"\n") <= 1
    if (not started or setup_failed) and not timed_out:
        res.status, res.verdict = "Error", "SandboxError"
        res.sandbox_error = err.data.decode(errors="replace")[-2000:] or f"bwrap exited with {rc}"
        return res
    if timed_out:
        res.status, res.verdict, res.return_code = "TimeLimitExceeded", "TimeLimitExceeded", None
    elif overflow:
        res.status, res.verdict = "Error", "OutputLimitExceeded"
    elif res.return_code in (128 + signal.SIGXCPU, -signal.SIGXCPU):
        res.status, res.verdict = "TimeLimitExceeded", "TimeLimitExceeded"
    elif res.return_code != 0:
        res.verdict = "MemoryLimitExceeded" if any(m in err.data for m in _MEMORY_MARKERS) else "RuntimeError"
    if collected or coll.truncated:
        res.files, res.executables = _untar(collected)
    return res


def _parse_status(text: bytes) -> tuple[bool, int | None]:
    """bwrap's --json-status-fd stream: {"child-pid": N} once the program started, {"exit-code": N} at the end."""
    pid, code = _status_fields(text)
    return pid is not None, code


def _status_fields(text: bytes) -> tuple[int | None, int | None]:
    pid, code = None, None
    decoder = json.JSONDecoder()
    s = text.decode(errors="replace")
    idx = 0
    while idx < len(s):
        while idx < len(s) and s[idx].isspace():
            idx += 1
        if idx >= len(s):
            break
        try:
            obj, idx = decoder.raw_decode(s, idx)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict):
            if isinstance(obj.get("child-pid"), int):
                pid = obj["child-pid"]
            if isinstance(obj.get("exit-code"), int):
                code = obj["exit-code"]
    return pid, code


def _untar(data: bytes) -> tuple[dict[str, bytes], set[str]]:
    """Regular files (and which are executable) from a tar stream made inside the sandbox.

    Links, devices and directories are ignored, nothing touches the host disk; a truncated
    stream yields the members that were complete.
    """
    files: dict[str, bytes] = {}
    executables: set[str] = set()
    with contextlib.suppress(tarfile.TarError, EOFError, OSError), \
            tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for member in tar:
            if not member.isreg():
                continue
            name = os.path.normpath("/" + member.name).lstrip("/")
            fh = tar.extractfile(member)
            if fh is not None and name:
                files[name] = fh.read()
                if member.mode & 0o111:
                    executables.add(name)
    return files, executables


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


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    if stdin is None:
        return
    try:
        if data:
            stdin.write(data)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with contextlib.suppress(Exception):
            stdin.close()


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


async def _terminate(proc: asyncio.subprocess.Process, waiter: asyncio.Future, status: _Capture) -> None:
    """Kill the whole sandbox and reap it.

    SIGKILL goes first to the pid namespace's init (bwrap's ``child-pid``): the kernel then kills
    every process of the namespace, and the outer bwrap reaps its init and exits, so nothing is
    orphaned (orphans would become zombies of the container's pid 1). Should that not end it,
    the outer bwrap is killed; ``--die-with-parent`` takes the init with it.
    """
    child, _ = _status_fields(status.data)
    if child is not None and _parent_of(child) == proc.pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), 2.0)
    if not waiter.done():
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await waiter


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


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
