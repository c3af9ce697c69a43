"""PretrainRun workload config (torch-free; embedded in the PretrainRun CRD)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from codekiln.workloads.eval.config import EvalConfig
from codekiln.workloads.model.config import ModelConfig, RopeScalingConfig
from codekiln.workloads.run_config import OptimizerConfig, TrainCheckpointConfig
from codekiln.workloads.schema import ConfigModel, problems


class TrainStageConfig(ConfigModel):
    """One training stage (Seed-Coder trains in stages of lr, context, FIM rate and RoPE base)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Stage name.")
    steps: int | None = Field(default=None, ge=1, description="Optimizer steps (set this or tokens).")
    tokens: int | None = Field(
        default=None, ge=1, description="Training tokens; converted to steps of the global batch (set this or steps)."
    )
    lr: float | None = Field(default=None, gt=0, le=1.0, description="Peak learning rate (default: optimizer.lr).")
    min_lr: float = Field(default=0.0, ge=0, description="Floor of the cosine/WSD decay.")
    seq_len: int = Field(ge=8, description="Sequence length in tokens (divides or is a multiple of the data's).")
    fim_rate: float = Field(default=0.0, ge=0, le=1, description="Fraction of documents turned into FIM form.")
    fim_mode: Literal["spm", "psm"] = Field(default="spm", description="FIM layout (Seed-Coder: SPM).")
    rope_theta: float | None = Field(default=None, gt=0, description="RoPE base for this stage (default: model's).")
    rope_scaling: RopeScalingConfig | None = Field(
        default=None,
        description="RoPE scaling from this stage on (context extension, e.g. {type: yarn, factor: 4, "
        "originalMaxPositionEmbeddings: 8192}); unset: the model's. The export carries the last stage's.",
    )
    schedule: Literal["constant", "step", "cosine", "wsd"] = Field(
        default="constant", description="Learning-rate schedule after warmup."
    )
    lr_warmup_steps: int = Field(default=0, ge=0, description="Linear warmup steps at the stage start.")
    step_decay_every_steps: int = Field(default=1000, ge=1, description="'step' schedule: decay interval.")
    step_decay_factor: float = Field(default=0.316227766, gt=0, le=1, description="'step' schedule: multiplier.")
    wsd_decay_fraction: float = Field(default=0.2, gt=0, le=1, description="'wsd': fraction of steps decaying.")

    @model_validator(mode="after")
    def _steps_or_tokens(self) -> TrainStageConfig:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError(f"stage {self.name!r}: set exactly one of steps or tokens")
        if self.lr is not None and self.min_lr > self.lr:
            raise ValueError(f"stage {self.name!r}: minLr ({self.min_lr}) exceeds lr ({self.lr})")
        if self.steps is not None and self.lr_warmup_steps > self.steps:
            raise ValueError(f"stage {self.name!r}: lrWarmupSteps ({self.lr_warmup_steps}) exceeds steps")
        return self


class DataConfig(ConfigModel):
    """Where the training data lives."""

    path: str = Field(
        min_length=1,
        description="Packed dataset folder (pretrain: a DataPipeline's packed output) or a JSONL chat file (sft).",
    )
    tokenizer: str | None = Field(default=None, description="tokenizer.json (default: <path>/tokenizer.json).")
    eval_sequences: int = Field(default=0, ge=0, description="Packed sequences held out from the end for evaluation.")
    eval_max_samples: int = Field(default=64, ge=1, description="Held-out samples (of the stage seqLen) per eval.")


class ExportConfig(ConfigModel):
    """Hugging Face export at the end of training."""

    enabled: bool = Field(default=True, description="Write a Hugging Face Llama folder at the end.")
    dir: str = Field(default="hf", min_length=1, description="Export folder (relative: to outputDir).")


class TrainConfig(ConfigModel):
    """Pretraining / SFT settings."""

    objective: Literal["pretrain", "sft"] = Field(default="pretrain", description="Training objective.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model architecture.")
    init_from: str | None = Field(
        default=None, min_length=1,
        description="Hugging Face folder to start from (e.g. a PretrainRun's export, for SFT or context extension); "
        "its shape replaces model (kernels/attention stay). A checkpoint in outputDir still wins on resume.",
    )
    data: DataConfig = Field(description="Training data.")
    stages: list[TrainStageConfig] = Field(
        min_length=1, max_length=64, description="Training stages, run in order.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    backend: Literal["ddp", "deepspeed"] = Field(default="ddp", description="Plain torch DDP or DeepSpeed ZeRO.")
    zero_stage: Literal[0, 1, 2, 3] = Field(default=2, description="DeepSpeed ZeRO stage (backend deepspeed).")
    micro_batch_size: int = Field(default=8, ge=1, description="Sequences per process per micro-step.")
    grad_accum_steps: int = Field(default=1, ge=1, description="Micro-steps per optimizer step.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="AdamW (shared with RLRun).")
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description="auto: bf16 on GPU, fp32 on CPU.")
    seed: int = Field(default=0, ge=0, description="Seed of init, sampling order and FIM.")
    output_dir: str = Field(default="runs/pretrain", min_length=1, description="Where metrics, summary, export go.")
    checkpoint: TrainCheckpointConfig = Field(
        default_factory=TrainCheckpointConfig, description="Dir relative to outputDir."
    )
    export: ExportConfig = Field(default_factory=ExportConfig)
    eval_every_steps: int = Field(default=0, ge=0, description="Evaluate held-out loss every N steps (0: at end).")
    eval: EvalConfig | None = Field(
        default=None, description="Benchmarks during training: pass@k in the sandbox, FIM exact match, needle probe.")
    log_every_steps: int = Field(default=10, ge=1, description="Metrics/progress interval.")
    peak_tflops: float | None = Field(
        default=None, gt=0, description="Per-device peak TFLOP/s for MFU (default: known GPUs; CPU: not reported)."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        found: list[tuple[str, str]] = []
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            if stage.name in names[:i]:
                found.append((f"stages[{i}].name", f"duplicate stage name {stage.name!r}"))
            if stage.seq_len > self.model.max_seq_len:
                found.append((f"stages[{i}].seqLen",
                              f"{stage.seq_len} exceeds model.maxSeqLen {self.model.max_seq_len}"))
            if self.objective == "sft" and stage.fim_rate:
                found.append((f"stages[{i}].fimRate", "must be 0 for objective sft"))
            if stage.lr is None:
                object.__setattr__(stage, "lr", self.optimizer.lr)
            if stage.min_lr > stage.lr:
                found.append((f"stages[{i}].minLr", f"{stage.min_lr} exceeds the stage's lr ({stage.lr})"))
        if found:
            raise problems(found)
        return self
