"""Turn tasks into a RolloutBatch: encode prompts, sample groups with an engine."""

from __future__ import annotations

import torch

from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.engines.base import RolloutEngine, SamplingParams
from codekiln.workloads.rl.tasks import Task


def generate_groups(
    engine: RolloutEngine, encode, tasks: list[Task], rollouts_per_prompt: int, params: SamplingParams
) -> RolloutBatch:
    """Sample ``rollouts_per_prompt`` completions for each task; one group per task."""
    prompts, task_ids, groups = [], [], []
    for gi, task in enumerate(tasks):
        ids = encode(task.prompt)
        for _ in range(rollouts_per_prompt):
            prompts.append(ids)
            task_ids.append(task.id)
            groups.append(gi)
    outs = engine.generate(prompts, params)
    width = max((len(o.token_ids) for o in outs), default=0)
    old = torch.zeros(len(outs), width)
    for i, o in enumerate(outs):
        old[i, : len(o.logprobs)] = torch.tensor(o.logprobs)
    return RolloutBatch(
        prompts=prompts, responses=[o.token_ids for o in outs], old_logp=old, group_ids=torch.tensor(groups),
        task_ids=task_ids, truncated=torch.tensor([o.finish_reason == "length" for o in outs]),
    )
