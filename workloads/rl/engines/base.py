"""The rollout engine interface: prompts in; token ids, per-token log-probs and finish reasons out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

FinishReason = Literal["stop", "length", "aborted"]


@dataclass
class SamplingParams:
    """How to sample. ``stop_token_ids`` end a completion (kept in it); ``stop_sequences`` are
    token-id sequences that end it once they appear at its tail (also kept).
    ``abort_fn(row, token_ids) -> bool`` may end a completion early (RFT divergence check)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop_token_ids: list[int] = field(default_factory=list)
    stop_sequences: list[list[int]] = field(default_factory=list)
    seed: int | None = None
    abort_fn: Callable[[int, list[int]], bool] | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Completion:
    """One sampled completion. ``logprobs[i]`` is log p(token_ids[i]) under the sampling
    distribution at temperature T (before top-p), i.e. what the trainer recomputes."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason


class RolloutEngine(Protocol):
    """What the RL loop needs from an inference engine."""

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Sample one completion per prompt (repeat a prompt for a group)."""
        ...

    def update_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the trainer's latest weights (called after every optimizer step)."""
        ...

    def sleep(self) -> None:
        """Release accelerator memory while the trainer runs (no-op where colocating is free)."""
        ...

    def wake_up(self) -> None:
        """Reacquire memory before the next rollout."""
        ...


def build_engine(kind: str, model, **kwargs) -> RolloutEngine:
    """``torch`` (on the trainer's model) or ``vllm`` (imported lazily)."""
    if kind == "torch":
        from codekiln.workloads.rl.engines.torch_engine import TorchEngine

        return TorchEngine(model, **kwargs)
    if kind == "vllm":
        from codekiln.workloads.rl.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model, **kwargs)
    raise ValueError(f"engine must be 'torch' or 'vllm', got {kind!r}")
