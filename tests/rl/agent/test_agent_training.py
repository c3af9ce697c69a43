"""Trajectory training pieces: tree-packed loss is exact, observation tokens never carry loss,
sub-task splitting, and the token mask survives the RL batch operations."""

from __future__ import annotations

import torch

from codekiln.workloads.rl.agent.rollout import Trajectory, to_batch
from codekiln.workloads.rl.agent.sft import encode_with_turns, trajectory_sft
from codekiln.workloads.rl.agent.tree import split_subtasks, tree_token_loss, unpacked_token_loss
from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.tokenizer import CharTokenizer


def _trajectories(vocab: int, seed: int = 0):
    """Three trajectories sharing a prefix (two also share their first turn), with masked spans."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, vocab, (9,), generator=g).tolist()
    turn = torch.randint(0, vocab, (5,), generator=g).tolist()
    seqs = [prefix + turn + torch.randint(0, vocab, (n,), generator=g).tolist() for n in (6, 4)]
    seqs.append(prefix + torch.randint(0, vocab, (7,), generator=g).tolist())
    masks = []
    for s in seqs:
        m = [False] * 9 + [True] * (len(s) - 9)
        m[11:13] = [False, False]  # an observation span inside
        masks.append(m)
    masks[1][9:14] = [False] * 5  # the same shared turn is error-masked in one trajectory only
    return seqs, masks


def test_tree_loss_and_gradients_equal_unpacked(make_model):
    model = make_model(torch.float64)
    seqs, masks = _trajectories(model.cfg.vocab_size)
    tree, n_tree = tree_token_loss(model, seqs, masks)
    g_tree = torch.autograd.grad(tree, list(model.parameters()))
    ref, n_ref = unpacked_token_loss(model, seqs, masks)
    g_ref = torch.autograd.grad(ref, list(model.parameters()))
    assert n_tree == n_ref == sum(sum(m[1:]) for m in masks)
    torch.testing.assert_close(tree, ref, rtol=1e-6, atol=1e-6)  # same tolerance as the RL trie tests
    for a, b in zip(g_tree, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # summed (not averaged) loss


def test_masked_tokens_get_exactly_zero_gradient(make_model):
    model = make_model(torch.float64)
    seqs, masks = _trajectories(model.cfg.vocab_size)
    seq, mask = seqs[2], masks[2]
    emb = model.embed_tokens.weight
    loss, _ = tree_token_loss(model, [seq], [mask])
    loss.backward()
    # change an observation token's *target* only: the loss is unchanged
    seq2 = list(seq)
    seq2[12] = (seq2[12] + 1) % model.cfg.vocab_size
    seq2_prefix_equal = seq2[:12] == seq[:12]
    loss2, _ = tree_token_loss(model, [seq2[:13]], [mask[:13]])
    loss1, _ = tree_token_loss(model, [seq[:13]], [mask[:13]])
    assert seq2_prefix_equal and torch.equal(loss1, loss2)
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_split_subtasks_keeps_the_prefix_and_trains_each_turn_once():
    tokens = list(range(40))
    mask = [False] * 10 + [True] * 30
    starts = [10, 20, 30]
    parts = split_subtasks(tokens, mask, starts, prefix_len=10, max_tokens=25)
    assert len(parts) == 3
    trained = []
    for ids, m in parts:
        assert ids[:10] == tokens[:10] and len(ids) <= 25
        trained += [t for t, k in zip(ids, m, strict=True) if k]
    assert trained == tokens[10:]  # every turn trained exactly once
    assert split_subtasks(tokens, mask, starts, 10, 100) == [(tokens, mask)]


def test_to_batch_masks_observations_and_survives_select_and_concat():
    trajs = []
    for i, (n_obs, reward) in enumerate([(3, 1.0), (0, 0.0), (5, 0.0)]):
        t = Trajectory(f"task{i % 2}", i % 2, prompt_len=4)
        t.extend([1, 2, 3, 4], False)
        t.extend([5, 6], True, [-0.5, -0.25])
        t.extend([9] * n_obs, False)
        t.extend([7], True, [-1.0])
        t.reward, t.resolved = reward, bool(reward)
        trajs.append(t)
    batch = to_batch(trajs)
    assert batch.token_mask.tolist()[0] == [True, True, False, False, False, True, False, False]
    mask = batch.loss_mask(overlong_filtering=True)
    assert mask.sum().item() == 9 and torch.equal(batch.old_logp[mask], torch.tensor([-0.5, -0.25, -1.0] * 3))
    sub = batch.select([2, 1])
    assert sub.token_mask.shape == sub.old_logp.shape and sub.loss_mask(True).sum().item() == 6
    merged = RolloutBatch.concat([sub, batch.select([0])])
    assert merged.token_mask[2].tolist()[:6] == [True, True, False, False, False, True]
    plain = RolloutBatch(prompts=[[1]], responses=[[3, 4]], old_logp=torch.zeros(1, 2), group_ids=torch.tensor([0]),
                         task_ids=["x"], truncated=torch.tensor([False]))
    mixed = RolloutBatch.concat([plain, sub])
    assert mixed.token_mask[0].tolist()[:2] == [True, True] and mixed.loss_mask(True).sum().item() == 8


def test_trajectory_sft_learns_the_assistant_turns(make_model):
    tok = CharTokenizer()
    model = make_model(torch.float32, vocab=tok.vocab_size)
    chat = [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix m"},
            {"role": "assistant", "content": "bad call", "failed": True},
            {"role": "tool", "content": "<tool_response>\nerror\n</tool_response>"},
            {"role": "assistant", "content": "ok"}]
    ids, mask, starts, prefix = encode_with_turns(chat, __import__(
        "codekiln.workloads.rl.agent.chat", fromlist=["ChatTokenizer"]).ChatTokenizer(tok))
    assert len(starts) == 2 and prefix == starts[0] and sum(mask) == len("ok") + 1
    losses = trajectory_sft(model, tok, [chat], steps=30, lr=1e-2, batch_size=2)
    assert losses[-1] < 0.5 * losses[0]
