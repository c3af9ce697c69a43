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


# ---------------------------------------------------------------- trie attention at scale (no [M, M] mask)
def _loop_mask(trie) -> torch.Tensor:
    """The original dense construction (a Python loop over nodes): the oracle for the interval test."""
    m = trie.num_tokens
    mask = torch.eye(m, dtype=torch.bool)
    for i, p in enumerate(trie.parent.tolist()):
        if p >= 0:
            mask[i] |= mask[p]
    return mask


def _forest(seed: int, vocab: int = 5):
    """Many branches at many depths (a small vocabulary makes rollouts share partial responses)."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
               for _ in range(3)]
    return [prompts[i % 3] + torch.randint(0, vocab, (int(torch.randint(0, 9, (1,), generator=g)),),
                                           generator=g).tolist() for i in range(14)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_mask_and_segment_attention_equal_the_dense_tree_mask(seed):
    from codekiln.workloads.rl.trie_attention import SegmentAttention

    trie = build_trie(_forest(seed))
    dense = _loop_mask(trie)
    assert torch.equal(trie.attention_mask(), dense)
    starts, ends, seg_parent = trie.segments()
    assert int(starts[0]) == 0 and int(ends[-1]) == trie.num_tokens and len(starts) < trie.num_tokens
    for s, e, p in zip(starts.tolist(), ends.tolist(), seg_parent.tolist(), strict=True):  # chains, ancestors whole
        assert all(int(trie.parent[i]) == i - 1 for i in range(s + 1, e))
        assert (p == -1) == (int(trie.parent[s]) == -1)
        if p >= 0:
            assert int(trie.parent[s]) == int(ends[p]) - 1
    g = torch.Generator().manual_seed(seed)
    m = trie.num_tokens
    q = torch.randn(1, 4, m, 8, generator=g, dtype=torch.float64)
    k, v = (torch.randn(1, 2, m, 8, generator=g, dtype=torch.float64) for _ in range(2))
    ours = SegmentAttention(trie).attend(q, k, v)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense[None, None], enable_gqa=True)
    assert float((ours - ref).abs().max()) < 1e-12


def test_flex_mask_mod_and_block_mask_match_the_tree():
    from torch.nn.attention.flex_attention import flex_attention

    from codekiln.workloads.rl.trie_attention import trie_block_mask

    trie = build_trie(_forest(3))
    m = trie.num_tokens
    i = torch.arange(m)
    mod = trie.mask_mod()
    assert torch.equal(mod(0, 0, i[:, None], i[None, :]), _loop_mask(trie))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, m, 8, generator=g) for _ in range(3))
    with torch.no_grad():
        out = flex_attention(q, k, v, block_mask=trie_block_mask(trie, "cpu", block_size=16))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=_loop_mask(trie)[None, None])
    assert float((out - ref).abs().max()) < 1e-5


def _packed_size(seqs) -> int:
    return build_trie(seqs).num_tokens if seqs else 0


def test_micro_batch_plan_respects_the_budget_and_is_optimal():
    from itertools import combinations

    from codekiln.workloads.rl.trie import plan_micro_batches

    seqs = _forest(4)[:7]
    whole = _packed_size(seqs)
    for budget in (max(len(s) for s in seqs), whole // 2, whole - 1, whole):
        parts = plan_micro_batches(seqs, budget)
        assert sorted(i for p in parts for i in p) == list(range(len(seqs)))
        assert all(_packed_size([seqs[i] for i in p]) <= budget for p in parts)
        cost = sum(_packed_size([seqs[i] for i in p]) for p in parts)
        # brute force over all set partitions into <= 3 parts (contiguity in sorted order is not assumed)
        best = whole if whole <= budget else None
        n = len(seqs)
        for a in range(1, n):
            for first in combinations(range(n), a):
                rest = [i for i in range(n) if i not in first]
                for b in range(0, len(rest)):
                    for second in combinations(rest, b + 1):
                        third = [i for i in rest if i not in second]
                        groups = [list(first), list(second)] + ([third] if third else [])
                        sizes = [_packed_size([seqs[i] for i in gr]) for gr in groups]
                        if max(sizes) <= budget:
                            best = sum(sizes) if best is None else min(best, sum(sizes))
        if best is not None:  # the DP is optimal over all partitions, not only contiguous ones
            assert cost <= best, (budget, cost, best)
    assert plan_micro_batches(seqs, whole) == [list(range(len(seqs)))]
    with pytest.raises(ValueError, match="trieMaxTokens"):
        plan_micro_batches(seqs, 2, field="trieMaxTokens")


@pytest.mark.parametrize("parts", ["one", "two", "many"])
def test_split_tree_gradients_equal_unpacked_in_fp64(make_model, make_batch, parts):
    """Memory-bounded packing: a tree split by the DP planner has exactly the unpacked gradients."""
    from codekiln.workloads.rl.update import LossSettings, accumulate_gradients, global_normalizer, plan

    model = make_model(torch.float64)
    batch = make_batch(model, n_groups=2, group_size=6, seed=5, truncated_rows=(3,))
    whole = _packed_size([p + r for p, r in zip(batch.prompts, batch.responses, strict=True)])
    longest = max(len(p) + len(r) for p, r in zip(batch.prompts, batch.responses, strict=True))
    budget = {"one": whole, "two": whole // 2 + longest, "many": longest}[parts]
    unpacked = LossSettings(packed=False, dual_clip_c=3.0, kl_coef=0.0)
    packed = LossSettings(packed=True, dual_clip_c=3.0, max_packed_tokens=budget)
    norm = global_normalizer(batch, unpacked)
    model.zero_grad()
    loss_u, _ = accumulate_gradients(model, batch, unpacked, norm, micro_batch_rollouts=len(batch))
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss_p, stats = accumulate_gradients(model, batch, packed, norm, micro_batch_rollouts=len(batch))
    n_parts = len(plan(batch, packed, len(batch)))
    assert {"one": n_parts == 1, "two": n_parts == 2, "many": n_parts >= 4}[parts], n_parts
    assert stats["micro_batches"] == n_parts
    diff = max(float((p.grad - ref[n]).abs().max()) for n, p in model.named_parameters())
    assert diff <= 1e-9 and abs(float(loss_p - loss_u)) <= 1e-12, diff
    assert min(float(g.abs().max()) for g in ref.values()) > 0
