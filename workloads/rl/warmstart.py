"""Warm start: a short in-run SFT on the task format (a random policy earns zero reward).

Targets are the reference body with probability ``correct_fraction`` and another task's
body otherwise, so the warm-started policy knows the answer *format* but picks the right
answer only part of the time. That leaves each group with reward variance, the regime
where GRPO has signal (REFERENCES §RL: start at a 5–60% pass rate).
"""

from __future__ import annotations

import random

import torch

from codekiln.workloads.model import ops
from codekiln.workloads.rl.tasks import Task


def sft_examples(tasks: list[Task], correct_fraction: float, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """``n`` (prompt, target) pairs."""
    out = []
    for _ in range(n):
        task = rng.choice(tasks)
        if task.reference is None:
            raise ValueError(f"task {task.id!r} has no reference answer for the warm-start SFT")
        if rng.random() < correct_fraction or not task.distractors:
            out.append((task.prompt, task.reference))
        else:
            out.append((task.prompt, rng.choice(task.distractors)))
    return out


def record_step(model, opt, loss: torch.Tensor, step: int, losses: list[float], on_step=None) -> None:
    """One warm-start optimizer step: backward, clip the gradient norm to 1.0, step; append the loss and
    report it as ``on_step(step + 1, loss)``.

    Args:
        model: the policy being trained.
        opt: its optimizer.
        loss: the step's scalar loss (with a graph).
        step: the 0-based step index.
        losses: the list the loss is appended to.
        on_step: optional progress callback.
    """
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    losses.append(float(loss.detach()))
    if on_step is not None:
        on_step(step + 1, losses[-1])


def sft_warm_start(
    model, tokenizer, tasks: list[Task], *, steps: int, lr: float, correct_fraction: float,
    batch_size: int = 32, seed: int = 0, on_step=None,
) -> list[float]:
    """Train ``model`` on the completion tokens (+EOT) of sampled examples; returns the losses."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    device = model.lm_head.weight.device
    losses = []
    model.train()
    for step in range(steps):
        pairs = sft_examples(tasks, correct_fraction, rng, batch_size)
        seqs = [(tokenizer.encode(p), tokenizer.encode(t) + [tokenizer.eot_id]) for p, t in pairs]
        width = max(len(p) + len(t) for p, t in seqs)
        ids = torch.full((len(seqs), width), tokenizer.pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for i, (p, t) in enumerate(seqs):
            ids[i, : len(p) + len(t)] = torch.tensor(p + t)
            labels[i, len(p) - 1 : len(p) + len(t) - 1] = torch.tensor(t)  # position j predicts token j+1
        ids, labels = ids.to(device), labels.to(device)
        hidden = model.hidden_states(ids)
        loss = ops.linear_cross_entropy(
            hidden.reshape(-1, hidden.shape[-1]), model.output_weight(), labels.reshape(-1), kernels=model.cfg.kernels
        )
        record_step(model, opt, loss, step, losses, on_step)
    return losses
