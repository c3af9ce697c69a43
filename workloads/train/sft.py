"""Supervised fine-tuning: chat formatting, assistant-only loss masks, error masking, packing.

A chat is a list of messages ``{"role": ..., "content": ..., "failed": bool?}``
formatted ChatML-style::

    <|im_start|>role\\ncontent<|im_end|>\\n

Loss falls on assistant content and its ``<|im_end|>`` only. Error-masked SFT (KAT):
an assistant turn marked ``"failed": true`` (a tool call that failed) gets zero loss,
while the reflection turn after it keeps its loss. Usable as a library (RL warm start):
``encode_chat`` -> ``pack_chats`` -> ``data.collate`` -> ``loss.token_ce_sum``, or
``sft_train`` for a whole single-process run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codekiln.workloads.data.packed import PackedSequence
from codekiln.workloads.special_tokens import IM_END, IM_START, PAD
from codekiln.workloads.train.data import collate, positions_from_documents

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class ChatSample:
    tokens: np.ndarray  # [n] int64
    loss_mask: np.ndarray  # [n] bool: token is a training target


def _special_id(tokenizer, token: str) -> int:
    tid = tokenizer.token_to_id(token)
    if tid is None:
        raise ValueError(f"tokenizer has no special token {token!r}")
    return tid


def encode_chat(messages: Sequence[dict], tokenizer) -> ChatSample:
    """Token ids and loss mask of one chat (``tokenizer``: a ``tokenizers.Tokenizer``)."""
    start, end = _special_id(tokenizer, IM_START), _special_id(tokenizer, IM_END)
    newline = tokenizer.encode("\n", add_special_tokens=False).ids
    ids: list[int] = []
    mask: list[bool] = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role: {role!r} is not one of {ROLES}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content: expected a string")
        header = [start, *tokenizer.encode(f"{role}\n", add_special_tokens=False).ids]
        body = [*tokenizer.encode(content, add_special_tokens=False).ids, end]
        learn = role == "assistant" and not message.get("failed", False)
        ids += header + body + newline
        mask += [False] * len(header) + [learn] * len(body) + [False] * len(newline)
    return ChatSample(np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool))


def read_chats(path: str | Path) -> list[list[dict]]:
    """A JSONL file of ``{"messages": [...]}`` lines."""
    chats = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                chats.append(json.loads(line)["messages"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: expected a JSON object with 'messages' ({exc})") from exc
    if not chats:
        raise ValueError(f"{path}: no chats")
    return chats


def pack_chats(samples: Iterable[ChatSample], seq_len: int, pad_id: int) -> list[tuple[PackedSequence, np.ndarray]]:
    """Greedy packing into ``seq_len`` sequences (one document per chat; long chats truncated; pad masked)."""
    packed, tokens, masks, docs = [], [], [], []

    def flush() -> None:
        used = sum(t.size for t in tokens)
        if not used:
            return
        t = np.concatenate([*tokens, np.full(seq_len - used, pad_id, dtype=np.int64)])
        m = np.concatenate([*masks, np.zeros(seq_len - used, dtype=bool)])
        d = np.concatenate([*docs, np.full(seq_len - used, len(tokens), dtype=np.int64)])
        packed.append((PackedSequence(t, d, positions_from_documents(d)), m))
        tokens.clear(), masks.clear(), docs.clear()

    for sample in samples:
        t, m = sample.tokens[:seq_len], sample.loss_mask[:seq_len]
        if sum(x.size for x in tokens) + t.size > seq_len:
            flush()
        docs.append(np.full(t.size, len(tokens), dtype=np.int64))
        tokens.append(t)
        masks.append(m)
    flush()
    return packed


class SftSource:
    """Packed chats as a sample source for the trainer (same interface as the pretraining source)."""

    def __init__(self, path: str | Path, tokenizer, seq_len: int) -> None:
        samples = [encode_chat(c, tokenizer) for c in read_chats(path)]
        self.items = pack_chats(samples, seq_len, _special_id(tokenizer, PAD))

    def __len__(self) -> int:
        return len(self.items)

    def get(self, epoch: int, index: int) -> tuple[PackedSequence, np.ndarray | None]:
        return self.items[index]


def sft_train(model, tokenizer, chats: Sequence[Sequence[dict]], *, steps: int, lr: float = 2e-5,
              seq_len: int = 512, micro_batch_size: int = 4, seed: int = 0) -> list[float]:
    """A minimal single-process SFT run (AdamW, constant lr) on ``chats``; returns per-step mean loss."""
    from codekiln.workloads.train.loss import token_ce_sum

    items = pack_chats([encode_chat(c, tokenizer) for c in chats], seq_len, _special_id(tokenizer, PAD))
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    device = next(model.parameters()).device
    losses = []
    model.train()
    for _ in range(steps):
        pick = rng.choice(len(items), size=min(micro_batch_size, len(items)), replace=False)
        seqs, masks = zip(*(items[i] for i in pick), strict=True)
        batch = {k: v.to(device) for k, v in collate(list(seqs), list(masks)).items()}
        n = max(1, int((batch["labels"] != -100).sum()))
        loss = token_ce_sum(model, batch) / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses
