"""DAPO dynamic sampling: drop groups whose rewards are all equal, refill, give up after a limit."""

from __future__ import annotations

from collections.abc import Callable

import torch

from codekiln.workloads.rl.batch import RolloutBatch


class DynamicSamplingError(RuntimeError):
    """Too few informative groups after ``max_num_gen_batches`` generation batches."""


def informative_groups(rewards: torch.Tensor, group_ids: torch.Tensor) -> list[int]:
    """Group ids (in order of first appearance) whose rewards are not all equal.

    A group of one rollout has no variance and is dropped.
    """
    keep = []
    for g in dict.fromkeys(group_ids.tolist()):
        r = rewards[group_ids == g]
        if len(r) > 1 and bool((r != r[0]).any()):
            keep.append(g)
    return keep


def collect_informative(
    generate: Callable[[], RolloutBatch],
    target_groups: int,
    max_num_gen_batches: int,
    enabled: bool = True,
) -> tuple[RolloutBatch, int]:
    """Call ``generate`` until ``target_groups`` informative groups are collected.

    Returns the batch (exactly ``target_groups`` groups when enabled) and the number of
    generation batches used. Disabled: one generation batch, returned unfiltered.

    Raises:
        DynamicSamplingError: still short after ``max_num_gen_batches`` batches.
    """
    if not enabled:
        return generate(), 1
    kept: list[RolloutBatch] = []
    n_groups = 0
    for attempt in range(1, max_num_gen_batches + 1):
        batch = generate()
        groups = informative_groups(batch.rewards, batch.group_ids)[: target_groups - n_groups]
        if groups:
            rows = torch.isin(batch.group_ids, torch.tensor(groups)).nonzero().squeeze(-1)
            kept.append(batch.select(rows))
            n_groups += len(groups)
        if n_groups >= target_groups:
            return RolloutBatch.concat(kept), attempt
    raise DynamicSamplingError(
        f"dynamicSampling: only {n_groups} of {target_groups} prompt groups had reward variance after "
        f"maxNumGenBatches={max_num_gen_batches} generation batches; the tasks are too easy or too hard for the "
        "policy (warm-start it, change the task set, or raise dynamicSampling.maxNumGenBatches)"
    )
