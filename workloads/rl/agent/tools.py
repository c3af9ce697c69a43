"""Execute validated tool calls in a sandbox session and turn the outcome into an observation.

The session is the sandbox server's stateful workspace (``workloads/sandbox`` sessions API:
``run``, ``read_file``, ``write_file``, ``close``). A tool's own failure (missing file, an
``old_str`` that does not occur once, a command that is not found or times out) is an
observation with ``failed=True`` — the signal error-masked SFT uses — never an exception;
only infrastructure failures (transport errors, 5xx: the sandbox is gone or broken) propagate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from codekiln.workloads.rl.agent.protocol import ToolCall, ToolCallError
from codekiln.workloads.rl.agent.testrun import TestReport, parse_report, runner_command


class Session(Protocol):
    """What the tools need from a sandbox session."""

    async def run(self, command: str, *, stdin: str | None = None, timeout_seconds: float | None = None) -> Any: ...

    async def read_file(self, path: str) -> Any: ...

    async def write_file(self, path: str, content: str) -> Any: ...

    async def close(self) -> Any: ...


@dataclass
class Observation:
    """What the agent sees after one call."""

    content: str
    failed: bool = False
    done: bool = False


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a client result (attribute or mapping)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _infrastructure_error(exc: BaseException) -> bool:
    """Errors that are not the model's doing: transport failures and server-side (5xx) errors."""
    import httpx

    status = getattr(exc, "status", None)
    return (isinstance(exc, httpx.TransportError | asyncio.TimeoutError | ConnectionError)
            or (isinstance(status, int) and status >= 500))


def clip(text: str, max_chars: int) -> str:
    """Keep the head and the tail of a long text, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    half = max(max_chars // 2 - 20, 1)
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def _text(read_result: Any) -> str:
    if isinstance(read_result, str):
        return read_result
    content = _get(read_result, "content")
    if content is None:
        raise ValueError("binary file")
    return content


async def run_test_ids(session: Session, test_ids: list[str], timeout_s: float) -> TestReport:
    """Run ``test_ids`` in the session with the trusted runner (stdin)."""
    cmd, stdin, marker = runner_command(test_ids)
    result = await session.run(cmd, stdin=stdin, timeout_seconds=timeout_s)
    return parse_report(_get(result, "stdout", "") or "", marker, test_ids, _get(result, "status", "Finished"))


class ToolExecutor:
    """Runs the agent's tools for one task in one session.

    Args:
        session: the sandbox session.
        task_tests: the task's test ids (``run_tests`` without arguments runs these).
        command_timeout_s: time limit of one ``bash`` command.
        test_timeout_s: time limit of one ``run_tests`` call.
        max_observation_chars: observations longer than this are clipped (head and tail kept).
    """

    def __init__(self, session: Session, task_tests: list[str], *, command_timeout_s: float = 30.0,
                 test_timeout_s: float = 60.0, max_observation_chars: int = 4000) -> None:
        self.session, self.task_tests = session, list(task_tests)
        self.command_timeout_s, self.test_timeout_s = command_timeout_s, test_timeout_s
        self.max_chars = max_observation_chars

    async def execute(self, call: ToolCall | ToolCallError) -> Observation:
        """One call → one observation (never raises for the model's mistakes)."""
        if isinstance(call, ToolCallError):
            return Observation(f"error: {call.message}", failed=True)
        try:
            obs = await getattr(self, f"_{call.name}")(**call.arguments)
        except Exception as exc:  # the session refused the call: a path outside the workspace, a missing file
            if _infrastructure_error(exc):
                raise
            obs = Observation(f"error: {call.name}: {exc}", failed=True)
        obs.content = clip(obs.content, self.max_chars)
        return obs

    async def _bash(self, command: str) -> Observation:
        r = await self.session.run(command, timeout_seconds=self.command_timeout_s)
        status, code = _get(r, "status", "Finished"), _get(r, "exit_code")
        out, err = _get(r, "stdout", "") or "", _get(r, "stderr", "") or ""
        head = f"exit code {code}" if status == "Finished" else f"{status} (exit code {code})"
        body = "\n".join(x for x in (head, out.rstrip(), f"stderr:\n{err.rstrip()}" if err.strip() else "") if x)
        return Observation(body, failed=status != "Finished" or code in (126, 127))

    async def _read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> Observation:
        text = _text(await self.session.read_file(path))
        if start_line is not None or end_line is not None:
            lines = text.splitlines(keepends=True)
            lo = max((start_line or 1) - 1, 0)
            text = "".join(lines[lo: end_line or len(lines)])
        return Observation(text)

    async def _write_file(self, path: str, content: str) -> Observation:
        await self.session.write_file(path, content)
        return Observation(f"wrote {path} ({len(content)} characters)")

    async def _str_replace(self, path: str, old_str: str, new_str: str) -> Observation:
        text = _text(await self.session.read_file(path))
        count = text.count(old_str) if old_str else 0
        if count != 1:
            why = "old_str is empty" if not old_str else f"old_str occurs {count} times in {path} (need exactly 1)"
            return Observation(f"error: str_replace: {why}", failed=True)
        await self.session.write_file(path, text.replace(old_str, new_str, 1))
        return Observation(f"edited {path}")

    async def _run_tests(self, tests: list[str] | None = None) -> Observation:
        ids = list(tests) if tests else self.task_tests
        report = await run_test_ids(self.session, ids, self.test_timeout_s)
        return Observation(report.summary())

    async def _submit(self) -> Observation:
        return Observation("submitted", done=True)
