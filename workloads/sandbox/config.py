"""Sandbox server config (torch-free; embedded in the SandboxPool CRD)."""

from __future__ import annotations

from pydantic import Field

from codekiln.workloads.schema import ConfigModel


class SandboxConfig(ConfigModel):
    """How one sandbox server executes code."""

    host: str = Field(default="0.0.0.0", description="Listen address.")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port.")
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Executions running at once.")
    max_queue: int = Field(
        default=64, ge=0, le=100000, description="Requests waiting; beyond: 429."
    )
