"""DataPipeline workload config (torch-free; embedded in the DataPipeline CRD).

Owned by the data pipeline; the operator relies only on ``stages[*].name`` and
``stages[*].shards``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from codekiln.workloads.schema import ConfigModel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class DataStepConfig(ConfigModel):
    """One block of a stage: documents in, documents out."""

    type: str = Field(description="Registered step name, e.g. `read_files`, `exact_dedup`, `syntax_filter`.")
    params: dict[str, Any] = Field(default_factory=dict, description="Step parameters (see the step's docs).")


class DataStageConfig(ConfigModel):
    """A stage runs as one Indexed Job; each shard is one completion index."""

    name: str = Field(pattern=DNS_LABEL, max_length=40, description="Stage name (DNS label).")
    shards: int = Field(default=1, ge=1, le=100000, description="Number of shards (Job completions).")
    steps: list[DataStepConfig] = Field(min_length=1, description="Blocks run in order within each shard.")


class DataPipelineConfig(ConfigModel):
    """What a DataPipeline curates and where it writes."""

    output_dir: str = Field(description="Root folder for stage outputs, markers and stats.")
    stages: list[DataStageConfig] = Field(min_length=1, description="Stages, run in order.")
