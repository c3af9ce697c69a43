"""Advantage estimators and KAT-Dev rescaling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codekiln.workloads.rl.advantages import compute_advantages, dr_grpo_advantages, grpo_advantages
from codekiln.workloads.rl.kat import kat_rescale


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 16])
def test_grpo_group_sizes(n):
    rewards = torch.arange(n, dtype=torch.float64)
    adv = grpo_advantages(rewards, torch.zeros(n, dtype=torch.long))
    if n == 1:
        assert adv.tolist() == [0.0]  # no baseline, no signal
        return
    expected = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    torch.testing.assert_close(adv, expected, atol=1e-12, rtol=0)
    assert abs(adv.sum().item()) < 1e-9


def test_all_equal_groups_get_zero_advantage_and_groups_are_independent():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    adv = grpo_advantages(rewards, groups)
    assert adv[:5].tolist() == [0.0] * 5
    torch.testing.assert_close(adv[5:], grpo_advantages(rewards[5:], torch.zeros(3, dtype=torch.long)))
    assert adv[5] > 0 > adv[6]


def test_dr_grpo_drops_std():
    rewards = torch.tensor([0.0, 0.0, 0.0, 4.0])
    adv = dr_grpo_advantages(rewards, torch.zeros(4, dtype=torch.long))
    assert adv.tolist() == [-1.0, -1.0, -1.0, 3.0]
    assert compute_advantages("dapo", rewards, torch.zeros(4, dtype=torch.long)).std() > 0
    with pytest.raises(ValueError, match="no advantage estimator"):
        compute_advantages("ppo", rewards, torch.zeros(4, dtype=torch.long))


def test_kat_zero_reproduces_grpo_bitwise():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (24,), generator=g).float()
    groups = torch.arange(24) // 6
    adv = grpo_advantages(rewards, groups)
    out = kat_rescale(adv, groups, rewards, torch.rand(24, generator=g), 0.0, 0.0)
    assert torch.equal(out, adv)


def test_kat_scales_hard_groups_and_high_entropy_samples_up():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])  # group 0 hard (25%), group 1 easy (75%)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    adv = grpo_advantages(rewards, groups)
    flat_h = torch.ones(8)
    out = kat_rescale(adv, groups, rewards, flat_h, difficulty_lambda=1.0, entropy_mu=0.0)
    assert (out[:4].abs() > adv[:4].abs()).all() and (out[4:].abs() < adv[4:].abs()).all()
    h = torch.tensor([2.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    out = kat_rescale(adv, groups, rewards, h, difficulty_lambda=0.0, entropy_mu=0.5)
    assert out[0].abs() > adv[0].abs() and out[3].abs() < adv[3].abs()
    torch.testing.assert_close(out[4:], adv[4:])


@settings(max_examples=60, deadline=None)
@given(
    rewards=st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=2, max_size=24),
    entropies=st.lists(st.floats(0, 10), min_size=24, max_size=24),
    lam=st.floats(0, 50), mu=st.floats(0, 50), group_size=st.integers(1, 6),
)
def test_kat_never_flips_a_sign(rewards, entropies, lam, mu, group_size):
    r = torch.tensor(rewards, dtype=torch.float64)
    groups = torch.arange(len(r)) // group_size
    adv = grpo_advantages(r, groups)
    out = kat_rescale(adv, groups, (r == 1.0).double(), torch.tensor(entropies[: len(r)]), lam, mu)
    assert ((out * adv) >= 0).all()
    assert (out[adv == 0] == 0).all()
