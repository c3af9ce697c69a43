"""Policy loss: clip-higher, dual clip, split invariance, all-truncated batches, overlong penalty."""

from __future__ import annotations

import copy

import pytest
import torch

from codekiln.workloads.rl.losses import aggregate, kl_k3, ppo_clip_loss
from codekiln.workloads.rl.overlong import overlong_filter_mask, overlong_penalty
from codekiln.workloads.rl.update import LossSettings, accumulate_gradients, global_normalizer, policy_update


def _grad_of_ratio(ratio: float, adv: float, **kw) -> float:
    logp = torch.tensor([[float(torch.log(torch.tensor(ratio)))]], requires_grad=True)
    ppo_clip_loss(logp, torch.zeros(1, 1), torch.tensor([adv]), **kw).sum().backward()
    return float(logp.grad)


def test_clip_higher_is_asymmetric():
    kw = {"clip_low": 0.2, "clip_high": 0.28}
    # A > 0: gradient flows up to ratio 1.28, stops beyond
    assert _grad_of_ratio(1.25, 1.0, **kw) != 0
    assert _grad_of_ratio(1.30, 1.0, **kw) == 0
    # A < 0: gradient flows down to ratio 0.8, stops below
    assert _grad_of_ratio(0.81, -1.0, **kw) != 0
    assert _grad_of_ratio(0.79, -1.0, **kw) == 0
    # the unclipped side always has gradient
    assert _grad_of_ratio(0.5, 1.0, **kw) != 0 and _grad_of_ratio(2.0, -1.0, **kw) != 0
    # symmetric clip would have stopped at 1.2
    assert _grad_of_ratio(1.25, 1.0, clip_low=0.2, clip_high=0.2) == 0


def test_dual_clip_bounds_negative_advantages():
    logp = torch.log(torch.tensor([[5.0, 5.0, 2.0]]))
    adv = torch.tensor([-1.0])
    plain = ppo_clip_loss(logp, torch.zeros(1, 3), adv)
    dual = ppo_clip_loss(logp, torch.zeros(1, 3), adv, dual_clip_c=3.0)
    assert plain[0, 0].item() == pytest.approx(5.0) and dual[0, 0].item() == pytest.approx(3.0)
    assert dual[0, 2].item() == pytest.approx(2.0)  # below c: unchanged
    pos = ppo_clip_loss(logp, torch.zeros(1, 3), torch.tensor([1.0]), dual_clip_c=3.0)
    torch.testing.assert_close(pos, ppo_clip_loss(logp, torch.zeros(1, 3), torch.tensor([1.0])))


def test_kl_k3_is_nonnegative_and_zero_at_equality():
    a = torch.randn(4, 5)
    assert (kl_k3(a, a) == 0).all()
    assert (kl_k3(a, a + torch.randn(4, 5)) >= 0).all()


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("mode", "packed"), [
    ("token-mean", True), ("token-mean", False), ("seq-mean-token-mean", True), ("seq-mean-token-mean", False),
    ("seq-mean-token-sum", True), ("seq-mean-token-sum-norm", True),
])
def test_loss_is_invariant_to_micro_batch_accumulation_and_dp_splits(make_model, make_batch, packed, mode):
    # ops.token_logprobs_entropy computes in fp32 even for fp64 inputs, so splits that change the
    # padded shapes differ by fp32 rounding (~1e-9); 1e-7 is still far below any split error (see next test)
    model = make_model(torch.float64)
    batch = make_batch(model, n_groups=4, group_size=4, truncated_rows=(2,))
    settings = LossSettings(normalization=mode, packed=packed, dual_clip_c=3.0, max_response_tokens=8)
    norm = global_normalizer(batch, settings)

    model.zero_grad()
    whole, _ = accumulate_gradients(model, batch, settings, norm, micro_batch_rollouts=len(batch))
    ref = _grads(model)
    for micro in (1, 3, 5):  # micro-batches / gradient accumulation
        model.zero_grad()
        loss, _ = accumulate_gradients(model, batch, settings, norm, micro_batch_rollouts=micro)
        assert abs(float(loss - whole)) < 1e-7
        for n, g in _grads(model).items():
            torch.testing.assert_close(g, ref[n], atol=1e-7, rtol=0, msg=n)
    # data parallel: ranks hold uneven shards, the normaliser is global, gradients are summed (all-reduce SUM)
    model.zero_grad()
    shards = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12, 13], [14, 15]]
    total = sum(accumulate_gradients(model, batch.select(rows), settings, norm, 2)[0] for rows in shards)
    assert abs(float(total - whole)) < 1e-7
    for n, g in _grads(model).items():
        torch.testing.assert_close(g, ref[n], atol=1e-7, rtol=0, msg=n)


def test_per_rank_mean_would_not_be_split_invariant(make_model, make_batch):
    """Guard that the test above can fail: a per-shard token mean differs from the global one."""
    model = make_model(torch.float64)
    batch = make_batch(model, n_groups=4, group_size=4)
    settings = LossSettings(packed=False)
    norm = global_normalizer(batch, settings)
    whole, _ = accumulate_gradients(model, batch, settings, norm, micro_batch_rollouts=16)
    shards = [list(range(0, 3)), list(range(3, 16))]
    local = sum(
        accumulate_gradients(model, batch.select(r), settings, global_normalizer(batch.select(r), settings), 16)[0]
        for r in shards
    ) / 2
    assert abs(float(local - whole)) > 1e-6


def test_all_truncated_batch_gives_zero_loss_and_leaves_parameters_unchanged(make_model, make_batch):
    model = make_model(torch.float64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    # one real step first so AdamW has momentum that a zero-grad step would still apply
    policy_update(model, opt, make_batch(model, seed=1), LossSettings())
    before = copy.deepcopy(model.state_dict())
    batch = make_batch(model, seed=2, truncated_rows=range(12))
    stats = policy_update(model, opt, batch, LossSettings(overlong_filtering=True))
    assert stats.skipped and stats.loss == 0.0 and stats.loss_tokens == 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    mask = batch.loss_mask(True)
    assert aggregate(torch.randn(mask.shape, dtype=torch.float64), mask, 0.0).item() == 0.0


def test_policy_update_changes_parameters_and_reports_stats(make_model, make_batch):
    model = make_model(torch.float64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.lm_head.weight.detach().clone()
    stats = policy_update(model, opt, make_batch(model), LossSettings(), micro_batch_rollouts=5, grad_clip_norm=1.0)
    assert not stats.skipped and stats.loss_tokens > 0 and stats.grad_norm > 0
    assert 0 <= stats.clip_fraction <= 1 and stats.entropy > 0
    assert not torch.equal(model.lm_head.weight, before)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (60, 0.0), (64, 0.0), (80, -0.5), (96, -1.0), (97, -1.0), (500, -1.0)],
)
def test_overlong_penalty_at_zero_buffer_and_beyond(length, expected):
    # max 96 tokens, buffer 32: free up to 64, linear to -1 at 96, capped beyond
    assert overlong_penalty(length, max_tokens=96, buffer_tokens=32, factor=1.0) == pytest.approx(expected)
    assert overlong_penalty(length, 96, 32, factor=0.5) == pytest.approx(expected * 0.5)


def test_overlong_filter_masks_only_truncated_rows():
    mask = torch.ones(3, 4, dtype=torch.bool)
    out = overlong_filter_mask(mask, torch.tensor([False, True, False]))
    assert out.sum(-1).tolist() == [4, 0, 4]
    with pytest.raises(ValueError):
        overlong_penalty(1, 10, 0)


def test_kl_penalty_is_zero_at_the_reference_and_pulls_towards_it(make_model, make_batch):
    model = make_model(torch.float64)
    batch = make_batch(model)
    settings = LossSettings(packed=False)
    norm = global_normalizer(batch, settings)
    model.zero_grad()
    accumulate_gradients(model, batch, settings, norm, 16)
    plain = _grads(model)
    with_kl = LossSettings(packed=False, kl_coef=0.5)
    model.zero_grad()
    accumulate_gradients(model, batch, with_kl, norm, 16, ref_model=copy.deepcopy(model))
    for n, g in _grads(model).items():  # k3 KL and its gradient vanish where policy == reference
        torch.testing.assert_close(g, plain[n], atol=1e-9, rtol=0, msg=n)
    other = make_model(torch.float64, seed=5)
    model.zero_grad()
    accumulate_gradients(model, batch, with_kl, norm, 16, ref_model=other)
    assert any((g - plain[n]).abs().max() > 1e-6 for n, g in _grads(model).items())
    with pytest.raises(ValueError, match="reference model"):
        accumulate_gradients(model, batch, with_kl, norm, 16)
