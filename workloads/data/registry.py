"""Step registry: the ``type`` names a DataPipeline spec may use, mapped to their classes (imported lazily)."""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from codekiln.workloads.data.base import StageContext, Step

STEPS: dict[str, str] = {
    # readers
    "read_files": "readers:ReadFiles",
    "read_repos": "readers:ReadRepos",
    "read_jsonl": "readers:ReadJsonl",
    "read_parquet": "readers:ReadParquet",
    "read_git_history": "git_reader:ReadGitHistory",
    "read_stage": "readers:ReadStage",
    "repo_metadata_filter": "readers:RepoMetadataFilter",
    # dedup
    "exact_dedup": "exact_dedup:ExactDedup",
    "exact_dedup_hashes": "exact_dedup:ExactDedupHashes",
    "exact_dedup_filter": "exact_dedup:ExactDedupFilter",
    "near_dedup": "near_dedup:NearDedup",
    "minhash_signatures": "near_dedup:MinhashSignatures",
    "minhash_buckets": "near_dedup:MinhashBuckets",
    "minhash_cluster": "near_dedup:MinhashCluster",
    "minhash_filter": "near_dedup:MinhashFilter",
    # filters and scorers
    "syntax_filter": "syntax:SyntaxFilter",
    "heuristic_filter": "heuristics:HeuristicFilter",
    "fasttext_quality": "quality:FastTextQuality",
    "fasttext_train": "quality:FastTextTrain",
    "llm_quality": "llm_quality:LLMQuality",
    "html_to_text": "recall:HtmlToText",
    # transforms
    "commit_samples": "commits:CommitSamples",
    "repo_concat": "repo_concat:RepoConcat",
    "long_context_filter": "repo_concat:LongContextFilter",
    "fim": "fim:FimStep",
    # sinks
    "train_tokenizer": "tokenizer:TrainTokenizer",
    "pack": "pack:PackStep",
}


class StepConfigError(ValueError):
    """A step in the spec is unknown or has bad parameters."""


def step_class(type_name: str) -> type[Step]:
    """The class registered under ``type_name``."""
    if type_name not in STEPS:
        raise StepConfigError(f"unknown step type {type_name!r}; known: {', '.join(sorted(STEPS))}")
    module, cls = STEPS[type_name].split(":")
    klass = getattr(importlib.import_module(f"codekiln.workloads.data.{module}"), cls)
    for dep in klass.requires:
        try:
            importlib.import_module(dep)
        except ImportError as exc:
            raise StepConfigError(f"step {type_name!r} needs the Python package {dep!r}: {exc}") from exc
    return klass


def build_step(type_name: str, params: dict, ctx: StageContext, where: str = "") -> Step:
    """Validate ``params`` against the step's ``Params`` model and construct it."""
    klass = step_class(type_name)
    try:
        parsed = klass.Params.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"params.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise StepConfigError(f"{where}step {type_name!r}: {problems}") from None
    return klass(parsed, ctx)


def validate_pipeline_steps(config) -> None:
    """Check every step type and params of a ``DataPipelineConfig`` without running anything.

    Also checks that stage references (``stage``, ``hashesStage``, ``signaturesStage``) name an earlier
    stage and that the MinHash stages share the signature stage's MinHash parameters.
    """
    earlier: list[str] = []
    signature_params: dict[str, dict] = {}
    for stage in config.stages:
        for i, step in enumerate(stage.steps):
            where = f"stage {stage.name!r} step {i} {step.type!r}"
            klass = step_class(step.type)
            try:
                parsed = klass.Params.model_validate(step.params)
            except ValidationError as exc:
                problems = "; ".join(f"params.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                raise StepConfigError(f"{where}: {problems}") from None
            for field in ("stage", "hashes_stage", "signatures_stage"):
                ref = getattr(parsed, field, None)
                if isinstance(ref, str) and ref not in earlier:
                    raise StepConfigError(f"{where}: params.{field} {ref!r} is not an earlier stage ({earlier})")
            if step.type == "minhash_signatures":
                signature_params[stage.name] = parsed.model_dump()
            ref = getattr(parsed, "signatures_stage", None)
            if ref is not None:
                ours = {k: v for k, v in parsed.model_dump().items() if k != "signatures_stage"}
                if ref not in signature_params:
                    raise StepConfigError(f"{where}: stage {ref!r} has no minhash_signatures step")
                if ours != signature_params[ref]:
                    diff = sorted(k for k in ours if ours[k] != signature_params[ref].get(k))
                    raise StepConfigError(f"{where}: MinHash params {diff} differ from stage {ref!r}")
        earlier.append(stage.name)
