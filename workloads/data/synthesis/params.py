"""Typed parameters of the post-training data steps (torch- and numpy-free; registered in ``step_params``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from codekiln.workloads.llm.config import LLMConfig
from codekiln.workloads.schema import ConfigModel, problems

# Seed-Coder-like meta styles: who asks, how, and what form the answer takes.
META_STYLES = [
    "a concise one-sentence task statement",
    "a detailed specification with input and output formats",
    "a beginner's question asking how to do something",
    "a bug report describing wrong behaviour and the expected behaviour",
    "a code-review request to refactor for readability",
    "an exam-style problem with examples",
    "a feature request from a product manager",
    "a request to write unit tests for the code",
    "a request to explain what the code does, step by step",
    "a request to port the code to another language",
]
TOPICS = ["algorithms", "data structures", "string processing", "math", "file and I/O", "web and networking",
          "data processing", "object-oriented design", "testing", "systems and concurrency", "other"]


class LLMStepParams(ConfigModel):
    """Shared by the LLM steps: the endpoint and generation length."""

    llm: LLMConfig = Field(description="OpenAI-compatible endpoint (baseUrl or, in local runs, serve: MODEL_DIR).")
    max_tokens: int = Field(default=512, ge=1, description="Completion length limit of this step's requests.")
    batch_docs: int = Field(default=64, ge=1, description="Documents sent concurrently per batch.")
    on_error: Literal["drop", "keep"] = Field(default="drop", description="Documents whose LLM call failed.")


class SandboxParams(ConfigModel):
    """Where code runs: ``sandboxUrl``, else $CODEKILN_SANDBOX_URL, else (local runs) a local sandbox server."""

    sandbox_url: str | None = Field(default=None, description="Sandbox server base URL.")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Run time limit of one program.")


class SeedSnippetsParams(ConfigModel):
    """``seed_snippets``: code units with their surrounding context from code files, notebooks and Markdown."""

    min_lines: int = Field(default=3, ge=1, description="Shortest snippet (lines).")
    max_lines: int = Field(default=80, ge=1, description="Longest snippet (lines); longer units are skipped.")
    context_chars: int = Field(default=1200, ge=0, description="Surrounding context kept (characters).")
    max_per_doc: int = Field(default=8, ge=1, description="Snippets taken from one document.")


class InstructionParams(LLMStepParams):
    """``instruction_generation``: an instruction grounded in the snippet, in a sampled or mixed style."""

    styles: list[str] = Field(default_factory=lambda: list(META_STYLES), min_length=2,
                              description="Meta-style set.")
    style_mix_rate: float = Field(default=0.3, ge=0, le=1, description="Share of documents whose style is a new "
                                  "one the LLM makes by mixing two random styles (Seed-Coder).")
    seed: int = Field(default=0, description="Style sampling seed (per document: seed + hash of id).")


class ResponseParams(LLMStepParams):
    """``response_generation``: the answer to ``metadata.instruction``."""

    system: str = Field(default="You are an expert programmer. Answer with correct, runnable code in fenced "
                        "blocks and a short explanation.", description="System prompt.")


class RewriteParams(LLMStepParams, SandboxParams):
    """``llm_rewrite`` (Qwen3-Coder): rewrite documents under a quality score; keep a rewrite only if it parses
    (and passes the original's ``metadata.tests`` where there are any)."""

    score_key: str = Field(default="quality_llm", description="Metadata key of the quality score.")
    threshold: float = Field(default=0.5, description="Documents scoring below are rewritten.")
    on_failure: Literal["drop", "keep_original"] = Field(
        default="drop", description="A rewrite that does not parse or fails the tests.")


class CodeBlockFilterParams(ConfigModel):
    """``code_block_filter``: every fenced code block of ``metadata.response`` must parse (tree-sitter/ast)."""

    require_code: bool = Field(default=True, description="Drop responses without any code block.")
    default_language: str = Field(default="python", description="Language of untagged blocks.")


class JudgeParams(LLMStepParams):
    """``llm_judge_filter``: does the response solve the instruction? 0–10; drop below ``minScore``."""

    min_score: float = Field(default=6.0, ge=0, le=10, description="Lowest kept score.")
    max_tokens: int = Field(default=64, ge=1)
    on_unparseable: Literal["drop", "keep"] = Field(
        default="drop", description="A verdict without a readable score (counted either way).")


class TopicDifficultyParams(LLMStepParams):
    """``topic_difficulty``: topic classification and per-topic difficulty 0–10; drop below ``minDifficulty``."""

    topics: list[str] = Field(default_factory=lambda: list(TOPICS), min_length=1, description="Topic labels.")
    min_difficulty: float = Field(default=3.0, ge=0, le=10, description="Seed-Coder drops < 3.")
    max_tokens: int = Field(default=64, ge=1)
    on_unparseable: Literal["drop", "keep"] = Field(
        default="drop", description="An answer without a readable difficulty (counted either way).")


class DifficultyWeightsParams(ConfigModel):
    """``difficulty_weights``: SFT sampling weight from ``metadata.difficulty`` (harder → more often)."""

    base: float = Field(default=1.0, gt=0, description="Weight at difficulty 0.")
    per_point: float = Field(default=0.2, ge=0, description="Weight added per difficulty point.")
    materialize: bool = Field(default=False, description="Repeat documents by their weight (stochastic "
                              "rounding, seeded) so any trainer samples them proportionally.")
    seed: int = Field(default=0)


class SelfCorrectionParams(LLMStepParams, SandboxParams):
    """``self_correction``: solution + tests, run in the sandbox, failures fed back, up to ``maxRounds``."""

    max_rounds: int = Field(default=3, ge=1, le=20, description="Attempts per instruction.")
    min_difficulty: float = Field(default=0.0, ge=0, le=10, description="Only instructions at least this hard "
                                  "go through the loop; easier ones pass unchanged.")
    max_tokens: int = Field(default=768, ge=1)


class SamplingParamsModel(LLMStepParams, SandboxParams):
    """Shared by ``dpo_pairs`` and ``rejection_sampling``: k samples per prompt, tested in the sandbox."""

    samples: int = Field(default=4, ge=1, le=64, description="Answers sampled per prompt (k).")
    temperature: float = Field(default=1.0, gt=0, le=2, description="Sampling temperature.")
    seed: int = Field(default=0, description="Sample i uses seed + i (recorded in the output).")
    mode: Literal["completion", "chat"] = Field(
        default="completion", description="completion: prompt is code to continue (the RL task format); chat: "
        "prompt is an instruction, the answer's code block is tested.")


class DPOPairsParams(SamplingParamsModel):
    """``dpo_pairs`` (Seed-Coder): pair a passing with a failing answer."""

    pairs_per_prompt: int = Field(default=1, ge=1, description="Pairs kept per prompt.")


class RejectionSamplingParams(SamplingParamsModel):
    """``rejection_sampling`` (LongCoT warm-up): keep only verified answers."""

    keep_per_prompt: int = Field(default=1, ge=1, description="Verified answers kept per prompt.")


class DecontamBenchmark(ConfigModel):
    """An evaluation set to protect: HumanEval, a task JSONL (RL task format) or text files."""

    source: Literal["humaneval", "jsonl", "files"] = Field(default="humaneval")
    path: str | None = Field(default=None, description="File or folder for jsonl / files.")

    @model_validator(mode="after")
    def _path(self) -> DecontamBenchmark:
        if self.source != "humaneval" and not self.path:
            raise problems([("path", f"required for source {self.source!r}")])
        return self


class DecontaminateParams(ConfigModel):
    """``decontaminate``: drop documents sharing an n-gram with an evaluation set; list them in a report."""

    benchmarks: list[DecontamBenchmark] = Field(default_factory=lambda: [DecontamBenchmark()], min_length=1,
                                                description="The evaluation sets in use.")
    word_ngram: int = Field(default=13, ge=3, le=100, description="Word n-gram length.")
    line_window: int = Field(default=10, ge=2, le=200, description="Consecutive normalised code lines.")
    min_item_lines: int = Field(default=4, ge=2, description="Benchmark items shorter than lineWindow match as "
                                "a whole when they have at least this many lines.")
    fields: list[str] = Field(default_factory=lambda: ["text", "prompt", "instruction", "response", "chosen",
                                                       "rejected", "reference", "tests", "messages"],
                              description="'text' and metadata keys checked (strings, lists, chats).")


class ExportParams(ConfigModel):
    """``export_sft`` / ``export_dpo``: write the training file (JSONL) and pass documents through."""

    path: str = Field(description="Output folder, relative to outputDir; one shard-XXXXX.jsonl per shard.")


SYNTHESIS_STEP_PARAMS: dict[str, type[ConfigModel]] = {
    "seed_snippets": SeedSnippetsParams,
    "instruction_generation": InstructionParams,
    "response_generation": ResponseParams,
    "llm_rewrite": RewriteParams,
    "code_block_filter": CodeBlockFilterParams,
    "llm_judge_filter": JudgeParams,
    "topic_difficulty": TopicDifficultyParams,
    "difficulty_weights": DifficultyWeightsParams,
    "self_correction": SelfCorrectionParams,
    "dpo_pairs": DPOPairsParams,
    "rejection_sampling": RejectionSamplingParams,
    "decontaminate": DecontaminateParams,
    "export_sft": ExportParams,
    "export_dpo": ExportParams,
}
