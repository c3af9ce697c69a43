"""Trie packing: structure, and exactness of loss and every parameter gradient vs unpacked."""

from __future__ import annotations

import pytest
import torch

from codekiln.workloads.rl.logprobs import response_logprobs_packed, response_logprobs_unpacked
from codekiln.workloads.rl.losses import aggregate, loss_normalizer, ppo_clip_loss
from codekiln.workloads.rl.trie import build_trie


def test_trie_structure_shares_prefixes_and_uses_depth_positions():
    trie = build_trie([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3, 6], [7]])
    # unique nodes: 1,2,3,4,6,5 under root 1, and 7 as a second root
    assert trie.num_tokens == 7
    assert trie.input_ids.tolist() == [1, 2, 3, 4, 6, 5, 7]
    assert trie.position_ids.tolist() == [0, 1, 2, 3, 3, 2, 0]
    assert trie.parent.tolist() == [-1, 0, 1, 2, 2, 1, -1]
    assert [p.tolist() for p in trie.paths] == [[0, 1, 2, 3], [0, 1, 5], [0, 1, 2, 4], [6]]
    mask = trie.attention_mask()
    # node 4 (token 6) attends its root path 0,1,2 and itself, not its sibling 3
    assert mask[4].nonzero().squeeze(-1).tolist() == [0, 1, 2, 4]
    assert mask[6].nonzero().squeeze(-1).tolist() == [6]  # a second tree sees nothing of the first


def _batch(seed: int, vocab: int):
    """Two prompts; rollouts share response prefixes; advantages differ in size and sign within a branch."""
    g = torch.Generator().manual_seed(seed)

    def rnd(n):
        return torch.randint(1, vocab, (n,), generator=g).tolist()

    p1, p2 = rnd(9), rnd(6)
    shared = rnd(4)
    responses = [shared + rnd(5), shared + rnd(3), shared[:2] + rnd(6), rnd(7), shared + [], rnd(2)]
    responses[4] = shared + rnd(1)
    prompts = [p1, p1, p1, p1, p2, p2]
    advantages = torch.tensor([1.5, -0.7, 0.3, -2.0, 0.9, -0.9])
    return prompts, responses, advantages


def _loss_and_grads(model, prompts, responses, advantages, old_logp, packed: bool):
    model.zero_grad()
    fn = response_logprobs_packed if packed else response_logprobs_unpacked
    logp, ent = fn(model, prompts, responses, temperature=0.8)
    mask = torch.zeros_like(logp, dtype=torch.bool)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = True
    per_token = ppo_clip_loss(logp, old_logp, advantages.to(logp.dtype), clip_low=0.2, clip_high=0.28, dual_clip_c=3.0)
    per_token = per_token - 0.01 * ent  # entropy term exercises the entropy gradient too
    loss = aggregate(per_token, mask, float(loss_normalizer(mask, "token")))
    loss.backward()
    return loss.detach(), logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_packed_loss_and_all_gradients_equal_unpacked(dtype, tol, make_model):
    model = make_model(dtype)
    prompts, responses, adv = _batch(0, model.cfg.vocab_size)
    with torch.no_grad():
        ref_logp, _ = response_logprobs_unpacked(model, prompts, responses, temperature=0.8)
    # old log-probs off the current ones so that some tokens are clipped and the ratio is not 1
    old = ref_logp + 0.4 * torch.randn(ref_logp.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    loss_u, logp_u, grads_u = _loss_and_grads(model, prompts, responses, adv, old, packed=False)
    loss_p, logp_p, grads_p = _loss_and_grads(model, prompts, responses, adv, old, packed=True)
    assert torch.allclose(logp_p, logp_u, atol=tol, rtol=0)
    assert abs(loss_p.item() - loss_u.item()) <= tol
    assert grads_u.keys() == grads_p.keys()
    for name in grads_u:
        assert grads_u[name].abs().max() > 0, name  # every parameter actually receives gradient
        torch.testing.assert_close(grads_p[name], grads_u[name], atol=tol, rtol=0, msg=name)


def test_packed_rows_are_shorter_than_unpacked():
    prompts, responses, _ = _batch(3, 37)
    trie = build_trie([p + r for p, r in zip(prompts, responses, strict=True)])
    assert trie.num_tokens < sum(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
