"""DataPipeline workload config (torch-free; embedded in the DataPipeline CRD).

A stage is a list of typed steps (each step a one-key mapping naming its type, e.g.
``- heuristicFilter: {minChars: 50}``), optionally reading an earlier stage (``input``) and
optionally deduplicating it (``dedup``). ``expand_stages`` turns the stages into the stages that
actually run (a ``dedup`` block becomes hash/signature → bucket → cluster → filter stages); the
operator makes one Indexed Job per expanded stage and the local runner runs the same list.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, Field, create_model, model_validator
from pydantic.alias_generators import to_camel

from codekiln.workloads.data.step_params import (
    INTERNAL_STEP_PARAMS,
    READER_STEPS,
    STEP_PARAMS,
    DedupConfig,
    ExactDedupFilterParams,
    ExactParams,
    MinhashParams,
    MinhashStageParams,
    ReadStageParams,
)
from codekiln.workloads.schema import ConfigModel, problems

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_STAGES = 64  # bounds the CRD's CEL rules (the API server estimates their cost from maxItems)
MAX_DEDUP_STAGE_NAME = 32  # leaves room for the "-hashes"/"-buckets"/"-cluster" stages it expands into
_STEP_ALIASES = {to_camel(name): name for name in STEP_PARAMS}
_INTERNAL_ALIASES = {to_camel(name): name for name in INTERNAL_STEP_PARAMS}


class _StepBase(ConfigModel):
    """One step: a mapping with exactly one key, the step type (camelCase), whose value holds its params."""

    # the CRD says the same: one key per step (the API server refuses `{}` and two types in one item)
    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    @model_validator(mode="before")
    @classmethod
    def _one_known_type(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"a step is a mapping with one key naming its type (e.g. `- syntaxFilter: {{}}`), "
                             f"got {type(data).__name__}")
        if not data:
            raise ValueError("empty step: name its type, e.g. `- syntaxFilter: {}`")
        if "type" in data and isinstance(data["type"], str):
            name = to_camel(data["type"])
            raise ValueError(f"write a step as one key naming its type, `- {name}: {{...params}}`, "
                             f"not `type: {data['type']}` + `params:`")
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in INTERNAL_STEP_PARAMS or key in _INTERNAL_ALIASES:
                raise ValueError(f"{key!r} is not written by hand: give the stage `input: <stage>` (reading) or a "
                                 "`dedup:` block (exact/near dedup across shards), which expand into it")
            if key not in _STEP_ALIASES and key not in STEP_PARAMS:
                close = difflib.get_close_matches(str(key), list(_STEP_ALIASES), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(_STEP_ALIASES))}"
                raise ValueError(f"unknown step type {key!r}{hint}")
            out[key] = {} if value is None else value
        if len(out) != 1:
            raise ValueError(f"a step names exactly one type, got {len(out)}: {', '.join(map(str, out))} "
                             "(write each as its own list item)")
        return out

    @property
    def type(self) -> str:
        """The registered step name (snake_case), e.g. ``heuristic_filter``."""
        return next(name for name in STEP_PARAMS if getattr(self, name) is not None)

    @property
    def params(self) -> ConfigModel:
        """The step's validated params model."""
        return getattr(self, self.type)


def _step_description(name: str, model: type) -> str:
    doc = (model.__doc__ or "").strip().splitlines()
    own = doc[0] if doc and "__doc__" in vars(model) else ""
    return f"The {to_camel(name)} step's params" + (f" ({own.rstrip('.')})." if own else ".")


DataStepConfig = create_model(
    "DataStepConfig",
    __base__=_StepBase,
    __doc__="One step: exactly one key, the step type, holding its params ({} for the defaults).",
    **{name: (model | None, Field(default=None, description=_step_description(name, model)))
       for name, model in STEP_PARAMS.items()},
)


class DataStageConfig(ConfigModel):
    """A stage runs as one Indexed Job (more when it has a ``dedup`` block); each shard is one completion index."""

    name: str = Field(pattern=DNS_LABEL, max_length=40, description="Stage name (DNS label).")
    shards: int = Field(default=1, ge=1, le=100000, description="Number of shards (Job completions).")
    input: str | None = Field(
        default=None, pattern=DNS_LABEL,
        description="Earlier stage whose documents this stage reads (same sharding when shard counts match).",
    )
    dedup: DedupConfig | None = Field(
        default=None, description="Exact and/or MinHash near dedup of the input across all shards, before the steps.",
    )
    steps: list[DataStepConfig] = Field(default_factory=list, description="Blocks run in order within each shard.")


class DataPipelineConfig(ConfigModel):
    """What a DataPipeline curates and where it writes."""

    output_dir: str = Field(description="Root folder for stage outputs, markers and stats.")
    stages: list[DataStageConfig] = Field(
        min_length=1, max_length=MAX_STAGES, description="Stages, run in order.",
        json_schema_extra={  # the API server checks what it can of _stage_graph (order needs indexes: operator)
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                {"rule": "self.all(s, !has(s.input) || (s.input != s.name && self.exists(t, t.name == s.input)))",
                 "message": "a stage's input must name another (earlier) stage of this pipeline"},
                {"rule": "self.all(s, !has(s.dedup) || has(s.input))",
                 "message": "a stage with dedup needs input (the stage whose documents it dedups)"},
            ],
        },
    )

    @model_validator(mode="after")
    def _stage_graph(self) -> DataPipelineConfig:
        found: list[tuple[str, str]] = []
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            where = f"stages[{i}]"
            if stage.name in names[:i]:
                first = names.index(stage.name)
                found.append((f"{where}.name", f"duplicate stage name {stage.name!r} (also stages[{first}])"))
            if stage.input is not None:
                if stage.input == stage.name:
                    found.append((f"{where}.input", "a stage cannot read itself"))
                elif stage.input in names[i + 1:] and stage.input not in names[:i]:
                    later = names.index(stage.input)
                    found.append((f"{where}.input", f"stage {stage.input!r} runs later (stages[{later}]); "
                                  "a stage can only read an earlier stage"))
                elif stage.input not in names[:i]:
                    close = difflib.get_close_matches(stage.input, names[:i], n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else f" (earlier stages: {names[:i] or 'none'})"
                    found.append((f"{where}.input", f"no stage named {stage.input!r}{hint}"))
            if stage.dedup is not None:
                if stage.input is None:
                    found.append((f"{where}.dedup", "needs `input` (the stage whose documents it dedups)"))
                if len(stage.name) > MAX_DEDUP_STAGE_NAME:
                    found.append((f"{where}.name", f"a stage with dedup needs a name of at most {MAX_DEDUP_STAGE_NAME} "
                                  "characters (it expands into <name>-hashes, -buckets, -cluster)"))
            elif not stage.steps:
                found.append((f"{where}.steps", "a stage needs steps (or a dedup block)"))
            elif stage.input is None and stage.steps[0].type not in READER_STEPS:
                found.append((f"{where}.input", f"the first step {to_camel(stage.steps[0].type)!r} reads no files: "
                              f"set `input: <earlier stage>` or start with a reader "
                              f"({', '.join(sorted(to_camel(r) for r in READER_STEPS))})"))
        if not found:
            expanded = [s.name for s in expand_stages(self)]
            clash = sorted({n for n in expanded if expanded.count(n) > 1})
            if clash:
                found.append(("stages", f"stage names {clash} clash with the stages a dedup block expands into"))
        if found:
            raise problems(found)
        return self

    def plan(self) -> list[PlannedStage]:
        """The stages that run, in order (see ``expand_stages``)."""
        return expand_stages(self)


@dataclass
class PlannedStage:
    """A stage as it runs: one Indexed Job of ``shards`` completions running ``steps`` in order."""

    name: str
    shards: int
    steps: list[tuple[str, ConfigModel]] = field(default_factory=list)  # (registered step name, params)
    source: str = ""  # the user's stage it comes from


def expand_stages(config: DataPipelineConfig) -> list[PlannedStage]:
    """Expand ``input`` into a ``read_stage`` step and ``dedup`` blocks into their stages (a pure function).

    A stage ``S`` (input ``I``, ``N`` shards) with ``dedup`` becomes ``S-hashes`` (N shards: read I, write SHA-256
    records and MinHash signatures), ``S-buckets`` (``near.bucketShards`` shards: band collisions → verified
    pairs), ``S-cluster`` (``near.clusterShards`` shards: connected components, split by label, survivors)
    and ``S`` itself (N shards: drop the duplicates, then the stage's own steps). Without ``near`` only
    ``S-hashes`` and ``S`` remain.

    Args:
        config: a validated pipeline config.
    """
    out: list[PlannedStage] = []
    for stage in config.stages:
        user_steps = [(s.type, s.params) for s in stage.steps]
        if stage.dedup is None:
            head = [("read_stage", ReadStageParams(stage=stage.input))] if stage.input else []
            out.append(PlannedStage(stage.name, stage.shards, head + user_steps, stage.name))
            continue
        exact, near = stage.dedup.exact, stage.dedup.near
        hashes = f"{stage.name}-hashes"
        shard_fields = {"bucket_shards", "cluster_shards"}
        minhash = MinhashParams.model_validate(near.model_dump(exclude=shard_fields)) if near else None
        first: list[tuple[str, ConfigModel]] = [("read_stage", ReadStageParams(stage=stage.input))]
        if exact:
            first.append(("exact_dedup_hashes", ExactParams(level=exact.level)))
        if minhash:
            first.append(("minhash_signatures", minhash))
        out.append(PlannedStage(hashes, stage.shards, first, stage.name))
        last: list[tuple[str, ConfigModel]] = [("read_stage", ReadStageParams(stage=hashes))]
        if exact:
            last.append(("exact_dedup_filter", ExactDedupFilterParams(level=exact.level, hashes_stage=hashes)))
        if minhash:
            from_sigs = MinhashStageParams(**minhash.model_dump(), signatures_stage=hashes)
            out.append(PlannedStage(f"{stage.name}-buckets", near.bucket_shards, [("minhash_buckets", from_sigs)],
                                    stage.name))
            out.append(PlannedStage(f"{stage.name}-cluster", near.cluster_shards, [("minhash_cluster", from_sigs)],
                                    stage.name))
            last.append(("minhash_filter", from_sigs))
        out.append(PlannedStage(stage.name, stage.shards, last + user_steps, stage.name))
    return out
