"""Sandbox server config (torch-free; embedded in the SandboxPool CRD)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from codekiln.workloads import contract
from codekiln.workloads.schema import ConfigModel

# Exit code of a sandbox server that cannot isolate runs (no bubblewrap, no namespaces). The
# SandboxPool pod exits with it after its self-check, and the operator reads it from the pod.
EXIT_SANDBOX_UNAVAILABLE = contract.EXIT_SANDBOX_UNAVAILABLE


class SandboxLimits(ConfigModel):
    """Per-execution limits. Requests may ask for less, never for more than the ``max_*`` caps."""

    compile_timeout_s: float = Field(default=10.0, gt=0, le=600, description="Default compile wall-clock limit.")
    run_timeout_s: float = Field(default=10.0, gt=0, le=600, description="Default run wall-clock limit.")
    max_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Largest timeout a request may ask for.")
    memory_mb: int = Field(
        default=1024, ge=16, le=65536, description="Default writable memory per process (RLIMIT_DATA), MiB."
    )
    max_memory_mb: int = Field(default=4096, ge=16, le=262144, description="Largest memory a request may ask for.")
    max_processes: int = Field(
        default=64, ge=4, le=4096, description="Processes and threads per execution (RLIMIT_NPROC)."
    )
    max_file_size_mb: int = Field(default=32, ge=1, le=65536, description="Largest file a program may write.")
    max_open_files: int = Field(default=256, ge=16, le=65536, description="Open file descriptors per process.")
    workspace_mb: int = Field(default=128, ge=1, le=65536, description="Size of the private tmpfs work directory.")
    tmp_mb: int = Field(default=64, ge=1, le=65536, description="Size of the private tmpfs at /tmp and /dev/shm.")
    max_output_bytes: int = Field(
        default=1 << 20, ge=1024, le=1 << 30, description="stdout and stderr are each cut at this size."
    )
    max_source_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30, description="Largest program source.")
    max_files: int = Field(default=64, ge=0, le=4096, description="Input or fetched files per request.")
    max_files_bytes: int = Field(
        default=32 << 20, ge=0, le=1 << 31, description="Total size of input or fetched files per request."
    )
    max_batch_cases: int = Field(default=1024, ge=1, le=100000, description="Test cases per batch request.")
    max_batch_output_bytes: int = Field(
        default=16 << 20, ge=1024, le=1 << 31,
        description="stdout+stderr kept for a whole run_batch request (later cases are cut: *_truncated).")
    max_path_bytes: int = Field(default=1024, ge=16, le=4096, description="Longest file path in a request.")
    max_path_depth: int = Field(default=16, ge=1, le=128, description="Most directories in a file path.")
    max_json_items: int = Field(
        default=1 << 18, ge=1024, le=1 << 24,
        description="JSON values (objects, arrays, scalars) in a request body, counted before it is parsed.")
    max_json_depth: int = Field(default=16, ge=4, le=256, description="Deepest JSON nesting of a request body.")

    @model_validator(mode="after")
    def _caps(self) -> SandboxLimits:
        for default, cap in (("compile_timeout_s", "max_timeout_s"), ("run_timeout_s", "max_timeout_s"),
                             ("memory_mb", "max_memory_mb")):
            if getattr(self, default) > getattr(self, cap):
                raise ValueError(f"{default}={getattr(self, default)} exceeds {cap}={getattr(self, cap)}")
        return self


class SessionLimits(ConfigModel):
    """Stateful sandbox sessions (``POST /sessions``): how many, how big, how long."""

    max_sessions: int = Field(default=16, ge=0, le=4096, description="Live sessions; beyond: 429.")
    ttl_s: float = Field(default=1800.0, gt=0, le=86400, description="Default lifetime of a session.")
    max_ttl_s: float = Field(default=7200.0, gt=0, le=7 * 86400, description="Longest lifetime a client may ask.")
    idle_timeout_s: float = Field(default=600.0, gt=0, le=86400, description="Closed after this long unused.")
    memory_mb: int = Field(default=1024, ge=16, le=65536, description="Memory per process of a session command.")
    max_memory_mb: int = Field(default=4096, ge=16, le=262144, description="Largest memory a session may ask.")
    disk_mb: int = Field(default=256, ge=1, le=65536, description="Workspace (tmpfs) of a session, MiB.")
    max_disk_mb: int = Field(default=1024, ge=1, le=262144, description="Largest workspace a session may ask.")
    pids: int = Field(default=128, ge=4, le=4096, description="Processes and threads per session command.")
    max_pids: int = Field(default=512, ge=4, le=65536, description="Most processes a session may ask.")
    cpu_seconds: float = Field(default=60.0, gt=0, le=3600, description="Default timeout of one command.")
    max_command_timeout_s: float = Field(default=600.0, gt=0, le=86400, description="Longest command timeout.")
    max_output_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30, description="stdout/stderr cap per command.")
    max_file_bytes: int = Field(default=16 << 20, ge=1024, le=1 << 31, description="Largest file read or written.")
    max_upload_bytes: int = Field(default=64 << 20, ge=1024, le=1 << 31,
                                  description="Initial files/archive of a session, bytes (decoded).")

    @model_validator(mode="after")
    def _caps(self) -> SessionLimits:
        for default, cap in (("memory_mb", "max_memory_mb"), ("disk_mb", "max_disk_mb"), ("pids", "max_pids"),
                             ("ttl_s", "max_ttl_s"), ("cpu_seconds", "max_command_timeout_s")):
            if getattr(self, default) > getattr(self, cap):
                raise ValueError(f"{default}={getattr(self, default)} exceeds {cap}={getattr(self, cap)}")
        return self


class SandboxConfig(ConfigModel):
    """How one sandbox server executes code."""

    host: str = Field(default="0.0.0.0", description="Listen address.")
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0: pick a free one).")
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Executions running at once.")
    max_queue: int = Field(
        default=64, ge=0, le=100000, description="Requests waiting; beyond: 429."
    )
    limits: SandboxLimits = Field(default_factory=SandboxLimits, description="Per-execution limits.")
    work_dir: str = Field(
        default="/tmp/codekiln-sandbox",
        pattern=r"^/",
        description="Writable scratch directory of the server (the only path it writes; a tmpfs in pods).",
    )
    sandbox_uid_base: int = Field(
        default=61000,
        ge=1000,
        le=2**31 - 70000,
        description="When the server runs as root, execution slot i runs as host uid base+i (exact process limits).",
    )
    languages: list[Literal["python", "bash", "nodejs", "javascript", "c", "cpp", "go", "java", "rust"]] = Field(
        default_factory=list, description="Languages to offer (empty: every language whose toolchain is present)."
    )
    max_request_mb: int = Field(default=64, ge=1, le=4096, description="Largest HTTP request body, MiB.")
    max_inflight_mb: int = Field(
        default=256, ge=1, le=1 << 20,
        description="Request bodies held at once (being read or admitted), MiB; beyond: 429. With "
                    "maxRequestMb this bounds the server's own memory whatever the request shapes.")
    max_uploads: int = Field(default=128, ge=1, le=100000,
                             description="Request bodies being read at once; beyond: 429.")
    read_timeout_s: float = Field(
        default=20.0, gt=0, le=3600, description="A request body must arrive within this time (else 408).")
    memory_budget_mb: int | None = Field(
        default=None, ge=64,
        description="Memory the server may give its sandboxes, MiB (default: the pod's cgroup limit minus "
                    "serverReserveMb). Per-run memory is clamped so every slot and session fits in it.")
    server_reserve_mb: int = Field(default=768, ge=64, le=1 << 20,
                                   description="Memory kept for the server process itself, MiB.")
    sessions: SessionLimits = Field(default_factory=lambda: SessionLimits(), description="Stateful sessions.")
