"""Wire models of the HTTP API: SandboxFusion's ``/run_code`` plus our ``/run_batch``.

Field names are SandboxFusion's (snake_case, ``memory_limit_MB``), so verl and other
SandboxFusion clients work unchanged. Our additions (``verdict``, ``*_truncated``) are
extra response fields such clients ignore. Unknown request fields are ignored, as
SandboxFusion does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["OK", "RuntimeError", "TimeLimitExceeded", "MemoryLimitExceeded", "OutputLimitExceeded",
                  "CompileError", "SandboxError"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class RunCodeRequest(_Wire):
    """``POST /run_code`` body (SandboxFusion)."""

    code: str = Field(description="Program source.")
    language: str = Field(description="python, bash, nodejs (alias javascript), c, cpp, go, java, rust.")
    compile_timeout: float | None = Field(default=None, description="Seconds; default from the server config.")
    run_timeout: float | None = Field(default=None, description="Seconds; default from the server config.")
    memory_limit_MB: int | None = Field(default=None, description="MiB per process; -1 or absent: default.")
    stdin: str | None = Field(default=None, description="Standard input of the run.")
    files: dict[str, str | None] = Field(default_factory=dict, description="path -> base64 content.")
    fetch_files: list[str] = Field(default_factory=list, description="Paths to return after the run.")


class CommandRunResult(_Wire):
    """One command (compile or run), SandboxFusion's shape plus verdict and truncation flags."""

    status: Literal["Finished", "Error", "TimeLimitExceeded"]
    execution_time: float | None = None
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    verdict: Verdict = "OK"
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class RunCodeResponse(_Wire):
    """``POST /run_code`` answer. ``status``: Success | Failed | SandboxError; ``message`` always present."""

    status: Literal["Success", "Failed", "SandboxError"]
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


class BatchCase(_Wire):
    """One test case of a batch: its own stdin, files and (optionally) the expected stdout."""

    stdin: str | None = None
    expected_stdout: str | None = Field(default=None, description="Compared after trimming trailing blanks.")
    files: dict[str, str | None] = Field(default_factory=dict)


class RunBatchRequest(_Wire):
    """``POST /run_batch``: one program, compiled once, run against every case in a fresh sandbox."""

    code: str
    language: str
    compile_timeout: float | None = None
    run_timeout: float | None = None
    memory_limit_MB: int | None = None
    files: dict[str, str | None] = Field(default_factory=dict, description="Files every case sees.")
    fetch_files: list[str] = Field(default_factory=list)
    cases: list[BatchCase] = Field(min_length=1)
    stop_on_first_failure: bool = Field(default=False, description="Skip the remaining cases after one fails.")


class CaseResult(_Wire):
    run_result: CommandRunResult | None = None
    passed: bool = Field(description="Exit code 0 and (when given) stdout equals expected_stdout.")
    skipped: bool = False
    files: dict[str, str] = Field(default_factory=dict)


class RunBatchResponse(_Wire):
    status: Literal["Success", "Failed", "SandboxError"]
    message: str = ""
    compile_result: CommandRunResult | None = None
    results: list[CaseResult] = Field(default_factory=list)
    passed: int = 0
    total: int = 0
    executor_pod_name: str | None = None
