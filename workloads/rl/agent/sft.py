"""SFT on agent trajectories: observations masked, failed tool calls masked, tree-packed.

``trajectory_sft`` trains on the assistant tokens of chats (``{"role", "content", "failed"?}``
messages, as :meth:`Trajectory.to_record` writes them and the SFT workload reads them). Tool
observations, system and user text are context only; an assistant turn whose tool call failed gets
no loss (KAT error-masked SFT) while the turns after it keep theirs. With ``tree=True`` every
micro-batch is one prefix tree (``tree.py``): the shared task prefix is computed once and the
loss equals the unpacked one exactly.
"""

from __future__ import annotations

import random

import torch

from codekiln.workloads.rl.agent.chat import ChatTokenizer, encode_messages
from codekiln.workloads.rl.agent.tree import split_subtasks, tree_token_loss, unpacked_token_loss
from codekiln.workloads.rl.warmstart import record_step


def encode_with_turns(messages: list[dict], ct: ChatTokenizer, error_masking: bool = True
                      ) -> tuple[list[int], list[bool], list[int], int]:
    """(ids, mask, turn starts, prefix length): a turn starts at each assistant message; the prefix
    is everything before the first one."""
    ids: list[int] = []
    mask: list[bool] = []
    starts: list[int] = []
    for m in messages:
        if m.get("role") == "assistant":
            starts.append(len(ids))
        i, k = encode_messages([m], ct, error_masking)
        ids += i
        mask += k
    prefix = starts[0] if starts else len(ids)
    return ids, mask, starts, prefix


def trajectory_samples(chats: list[list[dict]], ct: ChatTokenizer, *, error_masking: bool = True,
                       max_tokens: int | None = None) -> list[tuple[list[int], list[bool]]]:
    """Token samples of chats; chats longer than ``max_tokens`` are split into sub-task samples."""
    out = []
    for chat in chats:
        ids, mask, starts, prefix = encode_with_turns(chat, ct, error_masking)
        if max_tokens and len(ids) > max_tokens:
            out += split_subtasks(ids, mask, starts, prefix, max_tokens)
        else:
            out.append((ids, mask))
    return out


def trajectory_sft(model, tokenizer, chats: list[list[dict]], *, steps: int, lr: float, batch_size: int = 8,
                   tree: bool = True, error_masking: bool = True, max_tokens: int | None = None, seed: int = 0,
                   on_step=None) -> list[float]:
    """Train ``model`` on trajectory chats; returns the per-step mean token loss.

    Args:
        model: the policy.
        tokenizer: its tokenizer (char, tokenizer.json, or ``tokenizers.Tokenizer``).
        chats: message lists.
        steps: optimizer steps (AdamW, constant ``lr``, grad clip 1.0).
        batch_size: trajectories per step.
        tree: tree-pack each step's trajectories (else one causal row each; same loss).
        error_masking: no loss on failed assistant turns.
        max_tokens: split longer trajectories into sub-task samples (the model's context).
        seed: sampling seed.
        on_step: ``on_step(step, loss)`` after each step.
    """
    ct = tokenizer if isinstance(tokenizer, ChatTokenizer) else ChatTokenizer(tokenizer)
    samples = trajectory_samples(chats, ct, error_masking=error_masking, max_tokens=max_tokens)
    if not samples:
        raise ValueError("trajectory SFT: no trajectories")
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    loss_fn = tree_token_loss if tree else unpacked_token_loss
    losses = []
    model.train()
    for step in range(steps):
        pick = [samples[rng.randrange(len(samples))] for _ in range(batch_size)]
        total, n = loss_fn(model, [p[0] for p in pick], [p[1] for p in pick])
        if n == 0:
            continue
        record_step(model, opt, total / n, step, losses, on_step)
    return losses
