"""RLRun workload config (torch-free; embedded in the RLRun CRD)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.schema import ConfigModel


class RLConfig(ConfigModel):
    """Execution-driven RL settings."""

    algorithm: Literal["grpo", "dr_grpo", "dapo", "dpo", "rft"] = Field(default="grpo", description="Algorithm.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Policy architecture.")
    nproc_per_node: int = Field(default=1, ge=1, le=64, description="Processes (GPUs) per node.")
    steps: int = Field(default=100, ge=1, description="Optimizer steps.")
