"""Shared fixtures for the RL tests: tiny real models (no mocks)."""

from __future__ import annotations

import pytest
import torch

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer


def tiny_model(dtype: torch.dtype = torch.float64, seed: int = 0, vocab: int = 37) -> Transformer:
    """A 2-layer GQA model with an odd vocabulary, in ``dtype``."""
    torch.manual_seed(seed)
    cfg = ModelConfig(preset="tiny", vocab_size=vocab, dim=32, n_heads=4, n_kv_heads=2, ffn_dim=48, max_seq_len=256)
    model = Transformer(cfg).to(dtype)
    model.reset_parameters(std=0.3)  # larger weights so log-probs differ visibly between positions
    return model


@pytest.fixture
def make_model():
    """Factory fixture: ``make_model(dtype, seed=0, vocab=37)``."""
    return tiny_model


@pytest.fixture
def model64() -> Transformer:
    return tiny_model(torch.float64)


@pytest.fixture
def model32() -> Transformer:
    return tiny_model(torch.float32)


def random_batch(model, n_groups: int = 3, group_size: int = 4, seed: int = 0, truncated_rows=()):
    """A RolloutBatch with shared prompts per group, random responses, real old log-probs (perturbed)."""
    from codekiln.workloads.rl.advantages import grpo_advantages
    from codekiln.workloads.rl.batch import RolloutBatch
    from codekiln.workloads.rl.logprobs import response_logprobs_unpacked

    g = torch.Generator().manual_seed(seed)
    vocab = model.cfg.vocab_size
    prompts, responses, groups = [], [], []
    for gi in range(n_groups):
        prompt = torch.randint(1, vocab, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g).tolist()
        for _ in range(group_size):
            n = int(torch.randint(1, 9, (1,), generator=g))
            prompts.append(prompt)
            responses.append(torch.randint(1, vocab, (n,), generator=g).tolist())
            groups.append(gi)
    with torch.no_grad():
        logp, _ = response_logprobs_unpacked(model, prompts, responses)
    old = logp + 0.3 * torch.randn(logp.shape, generator=g, dtype=logp.dtype)
    rewards = torch.randint(0, 2, (len(responses),), generator=g).to(logp.dtype)
    group_ids = torch.tensor(groups)
    truncated = torch.zeros(len(responses), dtype=torch.bool)
    truncated[list(truncated_rows)] = True
    return RolloutBatch(
        prompts=prompts, responses=responses, old_logp=old, group_ids=group_ids,
        task_ids=[f"t{g}" for g in groups], truncated=truncated, rewards=rewards, passed=rewards.clone(),
        advantages=grpo_advantages(rewards, group_ids) + 0.1 * torch.randn(len(responses), generator=g,
                                                                               dtype=logp.dtype),
    )


@pytest.fixture
def make_batch():
    """Factory fixture: ``make_batch(model, n_groups=3, group_size=4, seed=0, truncated_rows=())``."""
    return random_batch
