"""PretrainRun workload config (torch-free; embedded in the PretrainRun CRD)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.schema import ConfigModel


class TrainStageConfig(ConfigModel):
    """One training stage (Seed-Coder trains in stages of lr, context and FIM rate)."""

    name: str = Field(description="Stage name.")
    steps: int = Field(ge=1, description="Optimizer steps in this stage.")
    lr: float = Field(gt=0, description="Peak learning rate of this stage.")
    seq_len: int = Field(ge=8, description="Sequence length in tokens.")


class TrainConfig(ConfigModel):
    """Pretraining / SFT settings."""

    objective: Literal["pretrain", "sft"] = Field(default="pretrain", description="Training objective.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model architecture.")
    nproc_per_node: int = Field(default=1, ge=1, le=64, description="Processes (GPUs) per node.")
    stages: list[TrainStageConfig] = Field(min_length=1, description="Training stages, run in order.")
