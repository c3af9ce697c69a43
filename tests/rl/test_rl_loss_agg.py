"""Loss aggregation by verl's names; Dr. GRPO's constant normaliser equals TRL's ``dr_grpo`` on identical
tensors (TRL's own ``GRPOTrainer._compute_loss`` is the oracle, set up as in test_rl_trl_oracle.py)."""

from __future__ import annotations

import pytest
import torch

from codekiln.workloads.rl.losses import (
    DEFAULT_LOSS_AGG,
    LOSS_AGG_MODES,
    aggregate,
    loss_normalizer,
    ppo_clip_loss,
    resolve_loss_agg_mode,
)

trl = pytest.importorskip("trl", reason="trl is the oracle for these tests (installed with the dev extra)")
from trl_grpo_oracle import trl_grpo_loss  # noqa: E402

MAX_COMPLETION = 12


def _trl_loss(loss_type: str, logp, old, adv, mask, eps_low=0.2, eps_high=0.28):
    return trl_grpo_loss(loss_type, logp, old, adv, mask, eps_low, eps_high, max_completion_length=MAX_COMPLETION)


def _rollouts(seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 4, 7, 0, 9, 5])  # row 3: fully masked (a filtered truncated completion)
    mask = (torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)).long()
    old = -torch.rand(6, 9, generator=g, dtype=torch.float64) * 3
    logp = (old + 0.5 * torch.randn(6, 9, generator=g, dtype=torch.float64)).requires_grad_(True)
    return logp, old, torch.randn(6, generator=g, dtype=torch.float64), mask


def _ours(mode, logp, old, adv, mask, eps_high=0.28):
    per_token = ppo_clip_loss(logp, old, adv, clip_low=0.2, clip_high=eps_high)
    return aggregate(per_token, mask.bool(), float(loss_normalizer(mask.bool(), mode, MAX_COMPLETION)), mode)


@pytest.mark.parametrize(("ours_mode", "trl_type", "eps_high"), [
    ("seq-mean-token-sum-norm", "dr_grpo", 0.28), ("seq-mean-token-mean", "grpo", 0.2), ("token-mean", "dapo", 0.28),
    ("token-mean", "bnpo", 0.28),
])
def test_aggregation_equals_trl_on_identical_tensors(ours_mode, trl_type, eps_high):
    logp, old, adv, mask = _rollouts(0)
    theirs = _trl_loss(trl_type, logp, old, adv, mask, eps_high=eps_high)
    ours = _ours(ours_mode, logp, old, adv, mask, eps_high)
    (g_theirs,) = torch.autograd.grad(theirs, logp)
    (g_ours,) = torch.autograd.grad(ours, logp)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-12, rtol=0)


def test_dr_grpo_normaliser_is_a_constant_not_the_token_count():
    logp, old, adv, mask = _rollouts(1)
    dr = _ours("seq-mean-token-sum-norm", logp, old, adv, mask)
    tok = _ours("token-mean", logp, old, adv, mask)
    assert float((dr / tok).detach()) == pytest.approx(float(mask.sum()) / (6 * MAX_COMPLETION))  # 34 / 72, not 1
    # the constant does not move with the batch's lengths: dropping tokens keeps the divisor 6 × 12
    assert float(loss_normalizer(mask[:, :2].bool(), "seq-mean-token-sum-norm", MAX_COMPLETION)) == 72.0


def test_seq_mean_token_sum_is_verls_formula():
    logp, old, adv, mask = _rollouts(2)
    per_token = ppo_clip_loss(logp, old, adv)
    want = (per_token * mask).sum(-1).mean()  # verl: sum over tokens, mean over sequences
    got = aggregate(per_token, mask.bool(), float(loss_normalizer(mask.bool(), "seq-mean-token-sum")),
                    "seq-mean-token-sum")
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_mode_names_defaults_and_errors():
    assert resolve_loss_agg_mode(None, "dr_grpo") == "seq-mean-token-sum-norm"
    assert resolve_loss_agg_mode("auto", "grpo") == "token-mean" == DEFAULT_LOSS_AGG["dapo"]
    assert resolve_loss_agg_mode("sequence") == "seq-mean-token-mean"
    assert set(DEFAULT_LOSS_AGG.values()) <= set(LOSS_AGG_MODES)
    with pytest.raises(ValueError, match="lossAggMode"):
        resolve_loss_agg_mode("mean")
    with pytest.raises(ValueError, match="maxResponseTokens"):
        loss_normalizer(torch.ones(2, 3, dtype=torch.bool), "seq-mean-token-sum-norm")
