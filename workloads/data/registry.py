"""Step registry: step type names mapped to their classes (imported lazily).

The params of each type live in ``step_params`` (torch/numpy-free, read by the operator and the
CRD generator); a class here must use that model as its ``Params``.
To add a step type: a params model in ``step_params.STEP_PARAMS``, a ``Step`` subclass with
``Params = step_params.<Model>``, an entry here, then ``codekiln crds``.
"""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from codekiln.workloads.data.base import StageContext, Step
from codekiln.workloads.data.step_params import ALL_STEP_PARAMS, STEP_PARAMS
from codekiln.workloads.schema import ConfigModel, error_lines

STEPS: dict[str, str] = {
    # readers
    "read_files": "readers:ReadFiles",
    "read_repos": "readers:ReadRepos",
    "read_jsonl": "readers:ReadJsonl",
    "read_parquet": "readers:ReadParquet",
    "read_hf_dataset": "readers:ReadHfDataset",
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
    "write_parquet": "parquet_out:WriteParquet",
    # post-training data (synthesis/)
    "seed_snippets": "synthesis.seeds:SeedSnippets",
    "instruction_generation": "synthesis.generate:InstructionGeneration",
    "response_generation": "synthesis.generate:ResponseGeneration",
    "llm_rewrite": "synthesis.generate:LLMRewrite",
    "code_block_filter": "synthesis.filters:CodeBlockFilter",
    "llm_judge_filter": "synthesis.filters:LLMJudgeFilter",
    "topic_difficulty": "synthesis.filters:TopicDifficulty",
    "difficulty_weights": "synthesis.filters:DifficultyWeights",
    "self_correction": "synthesis.verify:SelfCorrection",
    "dpo_pairs": "synthesis.verify:DPOPairs",
    "rejection_sampling": "synthesis.verify:RejectionSampling",
    "decontaminate": "decontam:Decontaminate",
    "export_sft": "synthesis.export:ExportSFT",
    "export_dpo": "synthesis.export:ExportDPO",
}


class StepConfigError(ValueError):
    """A step in the spec is unknown or has bad parameters."""


def step_params_model(type_name: str) -> type[ConfigModel]:
    """The params model of ``type_name`` (from ``step_params``; no step module is imported)."""
    if type_name not in ALL_STEP_PARAMS:
        raise StepConfigError(f"unknown step type {type_name!r}; known: {', '.join(sorted(STEP_PARAMS))}")
    return ALL_STEP_PARAMS[type_name]


def step_class(type_name: str) -> type[Step]:
    """The class registered under ``type_name`` (its module imported, its ``requires`` checked)."""
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


def build_step(type_name: str, params: dict | ConfigModel, ctx: StageContext, where: str = "") -> Step:
    """Construct step ``type_name`` from validated params (a model) or raw ones (a dict, validated here)."""
    klass = step_class(type_name)
    if isinstance(params, klass.Params):
        return klass(params, ctx)
    raw = params.model_dump() if isinstance(params, ConfigModel) else params
    try:
        parsed = klass.Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(error_lines(exc, ("params",)))
        raise StepConfigError(f"{where}step {type_name!r}: {problems}") from None
    return klass(parsed, ctx)


def check_step_classes() -> list[str]:
    """Problems with the tables: every step type has a class whose ``Params`` is its ``step_params`` model."""
    found = []
    for name, model in ALL_STEP_PARAMS.items():
        if name not in STEPS:
            found.append(f"{name}: has params but no registered class")
            continue
        module, cls = STEPS[name].split(":")
        klass = getattr(importlib.import_module(f"codekiln.workloads.data.{module}"), cls)
        if klass.Params is not model:
            found.append(f"{name}: {cls}.Params is not step_params.{model.__name__}")
    found += [f"{name}: registered class but no params model" for name in STEPS if name not in ALL_STEP_PARAMS]
    return found
