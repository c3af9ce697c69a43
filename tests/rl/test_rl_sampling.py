"""Dynamic sampling edge cases, curriculum and the resumable prompt sampler."""

from __future__ import annotations

import pytest
import torch

from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.curriculum import Curriculum, PromptSampler
from codekiln.workloads.rl.dynamic_sampling import DynamicSamplingError, collect_informative, informative_groups


def _batch(rewards: list[list[float]]) -> RolloutBatch:
    n = sum(len(g) for g in rewards)
    groups = torch.tensor([gi for gi, g in enumerate(rewards) for _ in g])
    return RolloutBatch(
        prompts=[[1]] * n, responses=[[2, 3]] * n, old_logp=torch.zeros(n, 2), group_ids=groups,
        task_ids=[f"t{g}" for g in groups.tolist()], truncated=torch.zeros(n, dtype=torch.bool),
        rewards=torch.tensor([r for g in rewards for r in g]), passed=torch.tensor([r for g in rewards for r in g]),
    )


def test_informative_groups_edge_cases():
    assert informative_groups(torch.zeros(8), torch.arange(8) // 4) == []  # all 0
    assert informative_groups(torch.ones(8), torch.arange(8) // 4) == []  # all 1
    assert informative_groups(torch.tensor([1.0, 0.0, 1.0]), torch.arange(3)) == []  # groups of one
    assert informative_groups(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5]), torch.arange(6) // 2) == [1]


def test_collect_refills_until_full_and_trims_to_target():
    batches = iter([_batch([[0, 0], [1, 0]]), _batch([[1, 1], [0, 0]]), _batch([[0, 1], [1, 0], [0, 1]])])
    out, used = collect_informative(lambda: next(batches), target_groups=3, max_num_gen_batches=5)
    assert used == 3
    assert len(torch.unique(out.group_ids)) == 3 and len(out) == 6
    assert all(len(set(out.rewards[out.group_ids == g].tolist())) == 2 for g in torch.unique(out.group_ids))


def test_collect_errors_after_max_num_gen_batches_with_a_clear_message():
    calls = []

    def gen():
        calls.append(1)
        return _batch([[1, 1], [1, 1]])

    with pytest.raises(DynamicSamplingError, match="0 of 2 prompt groups.*maxNumGenBatches=4"):
        collect_informative(gen, target_groups=2, max_num_gen_batches=4)
    assert len(calls) == 4


def test_collect_disabled_returns_one_unfiltered_batch():
    b = _batch([[1, 1], [0, 1]])
    out, used = collect_informative(lambda: b, target_groups=5, max_num_gen_batches=1, enabled=False)
    assert out is b and used == 1


def test_curriculum_retires_above_ceiling_and_keeps_a_minimum():
    cur = Curriculum(["a", "b", "c"], ceiling=0.875, min_active=1)
    cur.observe("a", 1.0)
    cur.observe("b", 0.875)  # at the ceiling: kept
    cur.observe("c", 0.9)
    assert cur.update() == ["a", "c"]
    assert cur.active() == ["b"]
    cur.observe("b", 1.0)
    assert cur.update() == [] and cur.active() == ["b"]  # never below min_active
    off = Curriculum(["a"], enabled=False)
    off.observe("a", 1.0)
    assert off.update() == [] and off.active() == ["a"]


def test_prompt_sampler_is_resumable_and_skips_retired_tasks():
    cur = Curriculum([f"t{i}" for i in range(5)])
    s1 = PromptSampler(cur, seed=7)
    s1.next(3)
    state = s1.state_dict()
    expected = s1.next(8)
    s2 = PromptSampler(Curriculum([f"t{i}" for i in range(5)]), seed=0)
    s2.load_state_dict(state)
    assert s2.next(8) == expected
    cur.observe("t0", 1.0)
    cur.update()
    assert "t0" not in s1.next(20)
