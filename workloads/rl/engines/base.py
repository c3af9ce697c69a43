"""The rollout engine interface: prompts in; token ids, per-token log-probs and finish reasons out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

FinishReason = Literal["stop", "length", "aborted"]
Weights = Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]


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

    def update_weights(self, weights: Weights) -> None:
        """Load the trainer's latest weights (after every optimizer step): a state dict, or a stream of
        (name, tensor) pairs that every rank iterates (gathered one parameter at a time from the shards)."""
        ...

    def sleep(self) -> None:
        """Release accelerator memory while the trainer runs (no-op where colocating is free)."""
        ...

    def wake_up(self) -> None:
        """Reacquire memory before the next rollout."""
        ...


def iter_weights(weights: Weights) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs from a state dict or a stream (a sharded policy yields one gathered tensor at a time)."""
    if isinstance(weights, Mapping):
        yield from weights.items()
    else:
        yield from weights


def finish_completion(token_ids: list[int], logprobs: list[float], finish_reason: FinishReason,
                      params: SamplingParams, row: int) -> Completion:
    """Apply token-sequence stops and ``abort_fn`` to a completion sampled by an engine that cannot (vLLM
    without a tokenizer): cut after the first stop sequence ("stop") or at the first aborting prefix ("aborted")."""
    for n in range(1, len(token_ids) + 1):
        prefix = token_ids[:n]
        if any(len(s) <= n and prefix[-len(s):] == s for s in params.stop_sequences if s):
            return Completion(prefix, logprobs[:n], "stop")
        if params.abort_fn is not None and n < len(token_ids) and params.abort_fn(row, prefix):
            return Completion(prefix, logprobs[:n], "aborted")
    return Completion(list(token_ids), list(logprobs), finish_reason)


def build_engine(kind: str, model, **kwargs) -> RolloutEngine:
    """``torch`` (on the trainer's model or a rollout replica) or ``vllm`` (imported lazily).

    Args:
        kind: "torch" or "vllm".
        model: the policy (torch: sampled from; vllm: its config and initial weights).
        kwargs: engine options; for vllm ``config`` (the spec's ``vllm`` block) selects colocate or server.
    """
    if kind == "torch":
        from codekiln.workloads.rl.engines.torch_engine import TorchEngine

        return TorchEngine(model, **kwargs)
    if kind == "vllm":
        config = kwargs.pop("config", None)
        if config is not None and config.mode == "server":
            from codekiln.workloads.rl.engines.vllm_server import VLLMServerEngine

            return VLLMServerEngine(model, config, **kwargs)
        from codekiln.workloads.rl.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model, config, **kwargs)
    raise ValueError(f"engine must be 'torch' or 'vllm', got {kind!r}")
