"""Reward client: score model completions against unit tests on a sandbox server.

Used by RLRun rewards and DPO labelling::

    client = RewardClient(os.environ["CODEKILN_SANDBOX_URL"], max_concurrency=32)
    results = client.score_batch([(completion, TestSpec(setup=check_src, tests=["check(f)"], entry_point="f"))])
    rewards = [r.pass_fraction for r in results]

Assert-style tests (Python) run through the trusted harness (``harness.py``); stdin/stdout
tests (any language) run through ``/run_batch``. Transport errors, 429 and 502–504 are
retried with exponential backoff; a program's own failure is a result, never retried.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from codekiln.workloads.sandbox.extract import extract_code
from codekiln.workloads.sandbox.harness import HARNESS, harness_stdin, parse_report
from codekiln.workloads.sandbox.languages import canonical

__all__ = ["IOCase", "RequestRejected", "RewardClient", "RewardResult", "SandboxTransportError", "TestOutcome",
           "TestSpec", "extract_code"]
_RETRY_STATUS = {429, 502, 503, 504}


@dataclass(frozen=True)
class IOCase:
    """One stdin/stdout test: the program's stdout must equal ``expected_stdout`` (trailing blanks ignored)."""

    stdin: str
    expected_stdout: str


@dataclass(frozen=True)
class TestSpec:
    """The tests of one task.

    Attributes:
        tests: assert-style Python snippets, each one test, run after the solution in its namespace.
        setup: Python run once before the tests (e.g. HumanEval's ``def check(candidate): ...``).
        entry_point: the function under test; in strict mode its return values must be plain data.
        io_cases: stdin/stdout tests (any language). A spec has ``tests`` or ``io_cases``, or both.
        strict: turn comparisons with non-data objects (always-true ``__eq__``) into failures.
        timeout_s: run time limit of one program execution.
        memory_mb: memory limit (None: the server's default).
    """

    __test__ = False  # not a pytest class

    tests: Sequence[str] = ()
    setup: str = ""
    entry_point: str | None = None
    io_cases: Sequence[IOCase] = ()
    strict: bool = True
    timeout_s: float = 10.0
    memory_mb: int | None = None

    @property
    def total(self) -> int:
        return len(self.tests) + len(self.io_cases)


@dataclass
class TestOutcome:
    """One test's result."""

    __test__ = False

    passed: bool
    kind: str  # "assert" | "io"
    index: int
    error: str | None = None
    verdict: str = "OK"


@dataclass
class RewardResult:
    """Score of one completion. ``verdict``: OK (all passed) | Failed | NoCode | CompileError |
    RuntimeError | TimeLimitExceeded | MemoryLimitExceeded | OutputLimitExceeded | Rejected (the
    server refused the request, e.g. oversized source) | SandboxError."""

    pass_fraction: float
    passed: int
    total: int
    verdict: str
    tests: list[TestOutcome] = field(default_factory=list)
    error: str | None = None
    code: str | None = None

    @classmethod
    def failed(cls, spec: TestSpec, verdict: str, error: str, code: str | None = None) -> RewardResult:
        outcomes = [TestOutcome(False, "assert", i, error, verdict) for i in range(len(spec.tests))]
        outcomes += [TestOutcome(False, "io", i, error, verdict) for i in range(len(spec.io_cases))]
        return cls(0.0, 0, spec.total, verdict, outcomes, error, code)


class SandboxTransportError(RuntimeError):
    """The sandbox server could not be reached (after every retry) or answered garbage."""


class RequestRejected(RuntimeError):
    """The server refused the request (HTTP 4xx/500): e.g. a program over the source size limit."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class RewardClient:
    """Scores completions on the sandbox at ``base_url`` with at most ``max_concurrency`` requests in flight."""

    def __init__(self, base_url: str, *, max_concurrency: int = 16, timeout_s: float = 60.0, retries: int = 4,
                 backoff_s: float = 0.2, require_fence: bool = False):
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.require_fence = require_fence
        self._sem: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RewardClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._sem = None

    # ------------------------------------------------------------ public API
    async def score(self, completion: str, tests: TestSpec, language: str = "python") -> RewardResult:
        """Extract the code from ``completion`` and run it against ``tests``."""
        code = extract_code(completion, language, require_fence=self.require_fence)
        if not code or not code.strip():
            return RewardResult.failed(tests, "NoCode", "no code found in the completion")
        return await self.score_code(code, tests, language)

    async def score_code(self, code: str, tests: TestSpec, language: str = "python") -> RewardResult:
        """Run already-extracted ``code`` against ``tests``."""
        if tests.total == 0:
            raise ValueError("TestSpec has no tests and no io_cases")
        try:
            return await self._score_code(code, tests, language)
        except RequestRejected as exc:
            # One odd completion (say, a 5 MB program) must not stop a training run: it scores 0.
            verdict = "SandboxError" if exc.status >= 500 else "Rejected"
            return RewardResult.failed(tests, verdict, str(exc), code)

    async def _score_code(self, code: str, tests: TestSpec, language: str) -> RewardResult:
        outcomes: list[TestOutcome] = []
        verdicts: list[str] = []
        errors: list[str] = []
        if tests.tests:
            if canonical(language) != "python":
                raise ValueError(f"assert-style tests need language python, got {language!r}")
            o, v, e = await self._run_asserts(code, tests)
            outcomes += o
            verdicts.append(v)
            errors += [e] if e else []
        if tests.io_cases:
            o, v, e = await self._run_io(code, tests, language)
            outcomes += o
            verdicts.append(v)
            errors += [e] if e else []
        passed = sum(o.passed for o in outcomes)
        bad = [v for v in verdicts if v != "OK"]
        verdict = "OK" if passed == len(outcomes) else (bad[0] if bad else "Failed")
        return RewardResult(passed / len(outcomes), passed, len(outcomes), verdict, outcomes,
                            "; ".join(errors) or None, code)

    async def score_many(self, items: Sequence[tuple[str, TestSpec]], language: str = "python") -> list[RewardResult]:
        """Score many (completion, tests) pairs concurrently, in order."""
        try:
            return list(await asyncio.gather(*(self.score(c, t, language) for c, t in items)))
        finally:
            await self.close()

    def score_batch(self, items: Sequence[tuple[str, TestSpec]], language: str = "python") -> list[RewardResult]:
        """Synchronous :meth:`score_many` (must not be called from a running event loop)."""
        return asyncio.run(self.score_many(items, language))

    # ------------------------------------------------------------ internals
    async def _run_asserts(self, code: str, spec: TestSpec) -> tuple[list[TestOutcome], str, str | None]:
        nonce = "@ck-" + secrets.token_hex(16) + "@"
        body = {"code": HARNESS, "language": "python", "run_timeout": spec.timeout_s,
                "stdin": harness_stdin(nonce, spec.setup, list(spec.tests), spec.entry_point, spec.strict),
                "files": {"solution.py": base64.b64encode(code.encode()).decode()}}
        if spec.memory_mb:
            body["memory_limit_MB"] = spec.memory_mb
        resp = await self._post("/run_code", body)
        run = resp.get("run_result") or {}
        verdict = run.get("verdict") or ("SandboxError" if resp.get("status") == "SandboxError" else "OK")
        records, error, done = parse_report(run.get("stdout") or "", nonce, len(spec.tests))
        if resp.get("status") == "SandboxError":
            error = resp.get("message") or "sandbox error"
        elif not done and verdict == "OK":
            verdict, error = "RuntimeError", error or "the harness did not finish (the solution ended the process)"
        outcomes = [TestOutcome(r["passed"], "assert", i, r["error"], "OK" if r["passed"] else verdict)
                    for i, r in enumerate(records)]
        return outcomes, verdict, error

    async def _run_io(self, code: str, spec: TestSpec, language: str) -> tuple[list[TestOutcome], str, str | None]:
        body = {"code": code, "language": language, "run_timeout": spec.timeout_s,
                "cases": [{"stdin": c.stdin, "expected_stdout": c.expected_stdout} for c in spec.io_cases]}
        if spec.memory_mb:
            body["memory_limit_MB"] = spec.memory_mb
        resp = await self._post("/run_batch", body)
        comp = resp.get("compile_result") or {}
        if comp and comp.get("verdict", "OK") != "OK":
            err = (comp.get("stderr") or "")[-2000:]
            verdict = comp.get("verdict") or "CompileError"
            return [TestOutcome(False, "io", i, err, verdict) for i in range(len(spec.io_cases))], verdict, err
        if resp.get("status") == "SandboxError" and not resp.get("results"):
            msg = resp.get("message") or "sandbox error"
            return [TestOutcome(False, "io", i, msg, "SandboxError") for i in range(len(spec.io_cases))], \
                "SandboxError", msg
        outcomes = []
        for i, res in enumerate(resp.get("results") or []):
            run = res.get("run_result") or {}
            v = run.get("verdict", "SandboxError")
            ok = bool(res.get("passed"))
            err = None if ok else ((run.get("stderr") or "")[-500:] or ("wrong answer" if v == "OK" else v))
            outcomes.append(TestOutcome(ok, "io", i, err, v if not ok and v != "OK" else ("OK" if ok else "Failed")))
        bad = [o.verdict for o in outcomes if o.verdict not in ("OK", "Failed")]
        return outcomes, (bad[0] if bad else "OK"), None

    async def _post(self, path: str, body: dict) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                                  connector=aiohttp.TCPConnector(limit=self.max_concurrency))
            self._sem = asyncio.Semaphore(self.max_concurrency)
        assert self._sem is not None
        delay = self.backoff_s
        last = ""
        for attempt in range(self.retries + 1):
            try:
                async with self._sem, self._session.post(self.base_url + path, json=body) as resp:
                    if resp.status in _RETRY_STATUS:
                        last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                    else:
                        data = await resp.json(content_type=None)
                        if resp.status >= 400:
                            raise RequestRejected(resp.status, f"{path}: {data.get('message')}")
                        return data
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise SandboxTransportError(f"{path}: giving up after {self.retries + 1} attempts ({last})")
