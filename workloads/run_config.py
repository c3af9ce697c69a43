"""Blocks PretrainRun (``spec.training``) and RLRun (``spec.rl``) share, with one meaning each (torch-free).

``outputDir`` is where a run writes (metrics, summary, export); ``checkpoint.dir`` is relative to it.
``optimizer`` is AdamW in both kinds; each kind only picks its own defaults.
"""

from __future__ import annotations

from pydantic import Field

from codekiln.workloads.schema import ConfigModel


class OptimizerConfig(ConfigModel):
    """AdamW: peak learning rate, decoupled weight decay (not on norms/biases in pretraining), betas, clipping."""

    lr: float = Field(default=3e-4, gt=0, le=1.0, description="Peak learning rate (PretrainRun stages may override).")
    weight_decay: float = Field(default=0.1, ge=0, description="Decoupled weight decay.")
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip_norm: float | None = Field(default=1.0, gt=0, description="Clip the global gradient norm (null: off).")


class CheckpointConfig(ConfigModel):
    """Atomic checkpoints in ``<outputDir>/<dir>``: every N steps and at the end (pretraining: each stage end).

    RLRun keeps one whole-state file (``rl_state.pt``, replaced atomically); PretrainRun keeps step folders
    and adds ``keepLast`` (``TrainCheckpointConfig``).
    """

    dir: str = Field(default="checkpoints", min_length=1, description="Checkpoint folder, relative to outputDir.")
    every_steps: int = Field(default=100, ge=0, description="Save every N optimizer steps (0: only at stage/run end).")
    resume: bool = Field(default=True, description="Resume from the latest checkpoint if one exists.")


class TrainCheckpointConfig(CheckpointConfig):
    """PretrainRun's checkpoints: a ``step-NNNNNNNN`` folder each, the last ``keepLast`` kept."""

    keep_last: int = Field(default=2, ge=1, description="Checkpoints kept; older ones deleted.")
