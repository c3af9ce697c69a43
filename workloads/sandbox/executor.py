"""Turns API requests into isolated executions: limits, files, compile once, run, verdicts.

Executions take one of ``max_concurrency`` slots. When the server runs as root, slot ``i``
runs as host uid ``sandbox_uid_base + i``, so RLIMIT_NPROC (counted per uid) bounds exactly
one execution; as a non-root server every slot shares the server's uid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import math
import os
import posixpath
from collections.abc import AsyncIterator

from codekiln.workloads.sandbox.cgroups import SlotCgroups
from codekiln.workloads.sandbox.config import SandboxConfig
from codekiln.workloads.sandbox.isolation import (
    WORKSPACE,
    ExecResult,
    Execution,
    Isolator,
    Limits,
    SandboxUnavailable,
    SetupError,
    Zygote,
    base_env,
)
from codekiln.workloads.sandbox.languages import Toolchain, canonical, detect
from codekiln.workloads.sandbox.memory import memory_plan
from codekiln.workloads.sandbox.models import (
    BatchCase,
    CaseResult,
    CommandRunResult,
    RunBatchRequest,
    RunBatchResponse,
    RunCodeRequest,
    RunCodeResponse,
)

NAME_MAX = 255


class RequestError(ValueError):
    """The request names a bad field value; the message says which and why.

    ``status``: 400 (malformed), 413 (over a size limit) or 422 (a value out of range).
    """

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field or message.split(":", 1)[0].split("[", 1)[0].strip() or "body"


class Executor:
    """Runs requests under the config's limits with at most ``max_concurrency`` executions at once.

    As root, each slot also gets a memory cgroup where cgroups can be created (``cgroups.py``).
    """

    def __init__(self, config: SandboxConfig):
        self.config = config
        self.limits = config.limits
        try:
            os.makedirs(config.work_dir, exist_ok=True)
        except OSError as exc:
            raise SandboxUnavailable(f"work_dir {config.work_dir!r} cannot be created: {exc}") from exc
        self.toolchains: dict[str, Toolchain] = detect(tuple(config.languages))
        binds = sorted({b for tc in self.toolchains.values() for b in tc.binds})
        self.isolator = Isolator(work_dir=config.work_dir, binds=binds)
        self._zygotes: list[Zygote | None] = [None] * config.max_concurrency
        self.plan = memory_plan(config)
        self.recycle_after = 2000  # jobs per warm sandbox before a fresh one (fresh hash seed, no drift)
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        for i in range(config.max_concurrency):
            self._slots.put_nowait(i)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # One memory cgroup per execution slot, then one per session (index max_concurrency + i).
            n = config.max_concurrency
            self.isolator.cgroups = SlotCgroups(n + config.sessions.max_sessions,
                                                lambda i: self.uid(i) if i < n else self.session_uid(i - n))
        self.pod_name = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or os.uname().nodename

    @property
    def uid_per_slot(self) -> bool:
        """True when each slot runs as its own host uid (server is root): exact per-run process limits."""
        return self._as_root

    @property
    def warm_count(self) -> int:
        """Warm sandboxes alive now."""
        return sum(1 for z in self._zygotes if z is not None and z.alive)

    @property
    def busy(self) -> int:
        return self.config.max_concurrency - self._slots.qsize()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """An execution slot (its index); see :meth:`uid` for the host uid it runs as."""
        index = await self._slots.get()
        try:
            yield index
        finally:
            self._slots.put_nowait(index)

    def uid(self, slot: int) -> int | None:
        """Host uid of a slot: its own when the server is root, else None (the server's uid)."""
        return self.config.sandbox_uid_base + slot if self._as_root else None

    def session_uid(self, index: int) -> int | None:
        """Host uid of live session ``index`` (after the slots' uids) when root, else None."""
        return self.config.sandbox_uid_base + self.config.max_concurrency + index if self._as_root else None

    def close(self) -> None:
        """Release host resources (the slot cgroups); warm sandboxes die with the server (--die-with-parent)."""
        for z in self._zygotes:
            if z is not None:
                with contextlib.suppress(OSError):
                    z.ctl.close()
                z.kill()
        if self.isolator.cgroups is not None:
            self.isolator.cgroups.close()

    async def aclose(self) -> None:
        """Stop every warm sandbox and wait for it."""
        for i, z in enumerate(self._zygotes):
            if z is not None:
                await z.close()
                self._zygotes[i] = None
        self.close()

    async def warm(self) -> None:
        """Start the warm sandbox of every idle slot (after the self-check), off the request path."""
        async def one(i: int) -> None:
            with contextlib.suppress(SandboxUnavailable):
                self._zygotes[i] = await self._start(i)

        await asyncio.gather(*(one(i) for i in range(self.config.max_concurrency) if self._zygotes[i] is None))

    async def _start(self, slot: int) -> Zygote:
        lim = self.limits
        return await self.isolator.start("oneshot", uid=self.uid(slot), slot=slot, workspace_mb=lim.workspace_mb,
                                         tmp_mb=lim.tmp_mb)

    async def execute(self, ex: Execution, slot: int, python_main: str | None = None,
                      env: dict[str, str] | None = None) -> ExecResult:
        """Run ``ex`` in slot ``slot``'s warm sandbox (started or replaced as needed)."""
        zyg = self._zygotes[slot]
        if zyg is None or not zyg.alive or zyg.jobs >= self.recycle_after:
            if zyg is not None:
                await zyg.close()
            self._zygotes[slot] = None
            zyg = self._zygotes[slot] = await self._start(slot)
        oom_before = None
        cg = self.isolator.cgroups
        if cg is not None and cg.enabled:
            lim = ex.limits
            total = (lim.memory_mb + lim.workspace_mb + 2 * lim.tmp_mb + 96) << 20
            _, oom_before = cg.prepare(slot, total)
        try:
            res = await zyg.run(ex, {"env": base_env(env if env is not None else ex.env), "python_main": python_main})
        except SetupError as exc:
            await zyg.close()
            self._zygotes[slot] = None
            return ExecResult(status="Error", verdict="SandboxError", return_code=None, stdout=b"", stderr=b"",
                              execution_time=0.0, sandbox_error=str(exc))
        if oom_before is not None and cg.oom_kills(slot) > oom_before:
            res.verdict = "MemoryLimitExceeded"
            if res.status == "Finished" and res.return_code == 0:
                res.status = "Error"
        return res

    # ------------------------------------------------------------ requests
    def _python_main(self, tc: Toolchain) -> str | None:
        return tc.language.source if tc.language.name == "python" else None

    async def run_code(self, req: RunCodeRequest) -> RunCodeResponse:
        tc, limits_c, limits_r, files = self._prepare(req.code, req.language, req.compile_timeout, req.run_timeout,
                                                      req.memory_limit_MB, req.files)
        fetch = self._fetch_paths(req.fetch_files)
        compile_result, program = await self._compile(tc, limits_c, files)
        if program is None:
            return RunCodeResponse(status="Failed", message="compilation failed", compile_result=compile_result,
                                   executor_pod_name=self.pod_name)
        stdin = (req.stdin or "").encode()
        async with self.slot() as slot:
            res = await self.execute(Execution(argv=tc.run_argv_for(limits_r), limits=limits_r, files=program,
                                               stdin=stdin, binds=tc.binds, env=tc.env, collect=fetch or None,
                                               uid=self.uid(slot), slot=slot), slot, self._python_main(tc))
        run_result = _command_result(res)
        status, message = _overall(res)
        return RunCodeResponse(status=status, message=message, compile_result=compile_result, run_result=run_result,
                               executor_pod_name=self.pod_name, files=_fetched(res, req.fetch_files))

    async def run_batch(self, req: RunBatchRequest) -> RunBatchResponse:
        if len(req.cases) > self.limits.max_batch_cases:
            raise RequestError(f"cases: {len(req.cases)} cases exceed the limit of {self.limits.max_batch_cases}",
                               413)
        tc, limits_c, limits_r, files = self._prepare(req.code, req.language, req.compile_timeout, req.run_timeout,
                                                      req.memory_limit_MB, req.files)
        fetch = self._fetch_paths(req.fetch_files)
        case_files = [self._decode_files(c.files, f"cases[{i}].files", base=files) for i, c in enumerate(req.cases)]
        total_in = sum(len(d) for f in case_files for d, _ in f.values())
        if total_in > self.limits.max_files_bytes:
            raise RequestError(f"cases: case files total {total_in} bytes, over the limit of "
                               f"{self.limits.max_files_bytes}", 413)
        compile_result, program = await self._compile(tc, limits_c, files)
        if program is None:
            return RunBatchResponse(status="Failed", message="compilation failed", compile_result=compile_result,
                                    results=[CaseResult(passed=False, skipped=True) for _ in req.cases],
                                    total=len(req.cases), executor_pod_name=self.pod_name)
        stop = asyncio.Event() if req.stop_on_first_failure else None
        # Per-request budgets: output kept and files fetched across all cases (see config.py).
        budget = {"output": self.limits.max_batch_output_bytes, "fetch": self.limits.max_files_bytes}

        async def one(case: BatchCase, extra: dict[str, tuple[bytes, bool]]) -> CaseResult:
            if stop is not None and stop.is_set():
                return CaseResult(passed=False, skipped=True)
            async with self.slot() as slot:
                if stop is not None and stop.is_set():
                    return CaseResult(passed=False, skipped=True)
                lim = limits_r
                if fetch:
                    lim = dataclasses.replace(limits_r, max_collect_bytes=max(0, min(limits_r.max_collect_bytes,
                                                                                     budget["fetch"])))
                res = await self.execute(Execution(
                    argv=tc.run_argv_for(lim), limits=lim, files={**program, **extra},
                    stdin=(case.stdin or "").encode(), binds=tc.binds, env=tc.env, collect=fetch or None,
                    uid=self.uid(slot), slot=slot), slot, self._python_main(tc))
            passed = res.verdict == "OK" and (case.expected_stdout is None
                                              or _same_output(res.stdout, case.expected_stdout))
            _charge(res, budget)
            if not passed and stop is not None:
                stop.set()
            return CaseResult(run_result=_command_result(res), passed=passed, files=_fetched(res, req.fetch_files))

        results = await asyncio.gather(*(one(c, f) for c, f in zip(req.cases, case_files, strict=True)))
        npass = sum(r.passed for r in results)
        errors = [r for r in results if r.run_result is not None and r.run_result.verdict == "SandboxError"]
        status = "SandboxError" if errors else ("Success" if npass == len(results) else "Failed")
        return RunBatchResponse(status=status, message=f"{npass}/{len(results)} cases passed",
                                compile_result=compile_result, results=list(results), passed=npass,
                                total=len(results), executor_pod_name=self.pod_name)

    async def self_check(self) -> str | None:
        """Check the work dir is writable and a real sandbox runs; returns an error text, or None."""
        probe = os.path.join(self.config.work_dir, f".probe-{os.getpid()}")
        try:
            with open(probe, "w") as fh:
                fh.write("ok")
            os.unlink(probe)
        except OSError as exc:
            return f"work_dir {self.config.work_dir!r} is not writable: {exc}"
        lim = self._limits(5.0, None)
        try:
            async with self.slot() as slot:
                res = await self.execute(Execution(argv=["/bin/sh", "-c", "exit 0"], limits=lim,
                                                   uid=self.uid(slot), slot=slot), slot)
        except SandboxUnavailable as exc:
            return str(exc)
        if res.verdict != "OK":
            return res.sandbox_error or f"self-check failed: {res.verdict} {res.stderr[-500:]!r}"
        return None

    # ------------------------------------------------------------ helpers
    def _prepare(self, code, language, compile_timeout, run_timeout, memory_mb, files):
        name = canonical(language or "")
        if name is None or name not in self.toolchains:
            offered = ", ".join(sorted(self.toolchains))
            raise RequestError(f"language: {language!r} is not available here (offered: {offered})")
        tc = self.toolchains[name]
        source = code.encode()
        if len(source) > self.limits.max_source_bytes:
            raise RequestError(f"code: {len(source)} bytes exceed the limit of {self.limits.max_source_bytes}")
        decoded = self._decode_files(files, "files")
        if tc.language.source in decoded:
            raise RequestError(f"files: {tc.language.source!r} is the program's own source file", 422)
        decoded[tc.language.source] = (source, False)
        limits_r = self._limits(run_timeout, memory_mb, field="run_timeout")
        limits_c = None
        if tc.compile_argv is not None:
            mem = max(limits_r.memory_mb, tc.language.compile_memory_floor_mb)
            limits_c = self._limits(compile_timeout, min(mem, self.plan.max_run_memory_mb), field="compile_timeout",
                                    default_timeout=self.limits.compile_timeout_s)
        return tc, limits_c, limits_r, decoded

    def _limits(self, timeout_s, memory_mb, field="run_timeout", default_timeout=None) -> Limits:
        cfg = self.limits
        if timeout_s is not None and not math.isfinite(timeout_s):
            raise RequestError(f"{field}: must be a finite number of seconds, got {timeout_s}", 422, field)
        if timeout_s is None or timeout_s <= 0:
            timeout_s = default_timeout or cfg.run_timeout_s
        if timeout_s > cfg.max_timeout_s:
            raise RequestError(f"{field}: {timeout_s}s exceeds the server limit of {cfg.max_timeout_s}s", 422)
        if memory_mb is None or memory_mb <= 0:
            memory_mb = cfg.memory_mb
        if memory_mb > cfg.max_memory_mb:
            raise RequestError(f"memory_limit_MB: {memory_mb} exceeds the server limit of {cfg.max_memory_mb}", 422)
        # The slots together must fit the pod's memory: clamp to this slot's share (memory.py).
        memory_mb = min(int(memory_mb), self.plan.max_run_memory_mb)
        return Limits(timeout_s=float(timeout_s), memory_mb=memory_mb, processes=cfg.max_processes,
                      file_size_mb=cfg.max_file_size_mb, open_files=cfg.max_open_files, workspace_mb=cfg.workspace_mb,
                      tmp_mb=cfg.tmp_mb, max_output_bytes=cfg.max_output_bytes, max_collect_bytes=cfg.max_files_bytes)

    def _decode_files(self, files: dict[str, str | None], field: str,
                      base: dict[str, tuple[bytes, bool]] | None = None) -> dict[str, tuple[bytes, bool]]:
        if len(files) > self.limits.max_files:
            raise RequestError(f"{field}: {len(files)} files exceed the limit of {self.limits.max_files}", 413)
        out: dict[str, tuple[bytes, bool]] = {}
        tree = PathTree(field)
        for path in base or {}:
            tree.add(path, path)
        total = 0
        for path, b64 in files.items():
            clean = sandbox_path(path, field, self.limits)
            tree.add(clean, path)
            try:
                data = base64.b64decode(b64 or "", validate=True)
            except (binascii.Error, ValueError) as exc:
                raise RequestError(f"{field}[{path!r}]: not valid base64 ({exc})", 422, field) from exc
            total += len(data)
            if total > self.limits.max_files_bytes:
                raise RequestError(f"{field}: files exceed {self.limits.max_files_bytes} bytes in total", 413)
            out[clean] = (data, False)
        if total > self.limits.workspace_mb << 20:
            raise RequestError(f"{field}: {total} bytes do not fit the {self.limits.workspace_mb} MiB workspace", 413)
        return out

    def _fetch_paths(self, paths: list[str]) -> list[str]:
        if len(paths) > self.limits.max_files:
            raise RequestError(f"fetch_files: {len(paths)} paths exceed the limit of {self.limits.max_files}", 413)
        return [sandbox_path(p, "fetch_files", self.limits) for p in paths]

    async def _compile(self, tc: Toolchain, limits: Limits | None, files: dict[str, tuple[bytes, bool]]):
        """Compile when the language needs it; returns (compile_result, files of the program or None)."""
        if tc.compile_argv is None or limits is None:
            return None, files
        async with self.slot() as slot:
            res = await self.execute(Execution(argv=list(tc.compile_argv), limits=limits, files=files,
                                               binds=tc.binds, env=tc.env, collect=["."], uid=self.uid(slot),
                                               slot=slot), slot)
        result = _command_result(res)
        if res.verdict != "OK":
            if res.verdict == "RuntimeError":
                result.verdict = "CompileError"
            return result, None
        program = {name: (data, name in res.executables) for name, data in res.files.items()}
        # Inputs under /tmp are not in the workspace: carry them over as given.
        program.update({p: f for p, f in files.items() if p.startswith("/")})
        return result, program


class PathTree:
    """Paths of one request: refuses duplicates and a file that is also a directory (``a`` and ``a/b``)."""

    def __init__(self, field: str):
        self.field = field
        self.files: dict[str, str] = {}
        self.dirs: set[str] = set()

    def add(self, clean: str, given: str) -> None:
        if clean in self.files or clean in self.dirs:
            other = self.files.get(clean, "a directory of another file")
            raise RequestError(f"{self.field}[{given!r}]: conflicts with {other!r}", 422, self.field)
        parts = clean.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self.files:
                raise RequestError(f"{self.field}[{given!r}]: {self.files[parent]!r} is a file, not a directory",
                                   422, self.field)
            self.dirs.add(parent)
        self.files[clean] = given


def sandbox_path(path: str, field: str, limits=None) -> str:
    """A request path as a workspace-relative path or an absolute /tmp path; anything else is refused.

    With ``limits`` the path's length, depth and component lengths are checked too (422).
    """
    if not path or "\x00" in path:
        raise RequestError(f"{field}: empty path or NUL byte in {path!r}", 400, field)
    if limits is not None:
        size = len(path.encode(errors="surrogatepass"))
        if size > limits.max_path_bytes:
            raise RequestError(f"{field}: a path of {size} bytes exceeds the limit of {limits.max_path_bytes}",
                               422, field)
    if path.startswith("/"):
        norm = posixpath.normpath(path)
        if norm.startswith(WORKSPACE + "/"):
            rel = norm[len(WORKSPACE) + 1:]
        elif norm.startswith("/tmp/"):
            rel = norm
        else:
            raise RequestError(f"{field}: {path!r} must be relative or under {WORKSPACE} or /tmp", 400, field)
    else:
        rel = posixpath.normpath(path)
    if rel in (".", "") or rel.startswith("../") or rel == "..":
        raise RequestError(f"{field}: {path!r} escapes the work directory", 400, field)
    if limits is not None:
        parts = rel.strip("/").split("/")
        if len(parts) - 1 > limits.max_path_depth:
            raise RequestError(f"{field}: {path[:80]!r}… is {len(parts) - 1} directories deep, over the limit of "
                               f"{limits.max_path_depth}", 422, field)
        long = [p for p in parts if len(p.encode(errors="surrogatepass")) > NAME_MAX]
        if long:
            raise RequestError(f"{field}: a path component of {len(long[0].encode(errors='surrogatepass'))} bytes "
                               f"exceeds NAME_MAX ({NAME_MAX})", 422, field)
    return rel


def _charge(res: ExecResult, budget: dict) -> None:
    """Cut a batch case's output and files to what is left of the request's budgets."""
    for name in ("stdout", "stderr"):
        data = getattr(res, name)
        keep = max(0, min(len(data), budget["output"]))
        if keep < len(data):
            setattr(res, name, data[:keep])
            setattr(res, f"{name}_truncated", True)
        budget["output"] -= keep
    size = sum(len(d) for d in res.files.values())
    if size > budget["fetch"]:
        res.files = {}
    else:
        budget["fetch"] -= size


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _command_result(res: ExecResult) -> CommandRunResult:
    stderr = _text(res.stderr) if res.verdict != "SandboxError" else res.sandbox_error
    return CommandRunResult(status=res.status, execution_time=res.execution_time, return_code=res.return_code,
                            stdout=_text(res.stdout), stderr=stderr, verdict=res.verdict,
                            stdout_truncated=res.stdout_truncated, stderr_truncated=res.stderr_truncated)


def _overall(res: ExecResult) -> tuple[str, str]:
    if res.verdict == "SandboxError":
        return "SandboxError", res.sandbox_error or "sandbox failed to start"
    if res.verdict == "OK":
        return "Success", ""
    return "Failed", res.verdict


def _fetched(res: ExecResult, requested: list[str]) -> dict[str, str]:
    out = {}
    for path in requested:
        key = sandbox_path(path, "fetch_files")
        if key in res.files:
            out[path] = base64.b64encode(res.files[key]).decode()
    return out


def _same_output(stdout: bytes, expected: str) -> bool:
    def norm(text: str) -> list[str]:
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    return norm(_text(stdout)) == norm(expected)
