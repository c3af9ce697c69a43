"""RLConfig: defaults, constraints with clear messages, the example resource, the stage plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from codekiln.workloads.rl.config import RLConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rlrun" / "rlrun.yaml"


def test_defaults_follow_the_references():
    cfg = RLConfig()
    assert (cfg.clip_ratio_low, cfg.clip_ratio_high) == (0.2, 0.28)
    assert cfg.kl_coef == 0.0 and cfg.loss_agg_mode == "auto"
    assert cfg.curriculum.pass_rate_ceiling == 0.875
    assert cfg.dynamic_sampling.max_num_gen_batches == 10
    assert cfg.overlong.buffer_tokens == 4096 and cfg.overlong.penalty_factor == 1.0
    assert cfg.kat.difficulty_lambda == 0 and cfg.kat.entropy_mu == 0
    assert cfg.dpo_beta == 0.1
    assert [s.name for s in cfg.stage_plan()] == ["main"] and cfg.total_steps == cfg.steps


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"clipRatioHigh": 0.1}, "clipRatioHigh"),
        ({"algorithm": "dapo", "dynamicSampling": {"enabled": False}}, "dynamicSampling"),
        ({"tasks": {"source": "jsonl"}}, "tasks.path"),
        ({"rolloutsPerPrompt": 0}, "rolloutsPerPrompt"),
        ({"algorithm": "ppo"}, "algorithm"),
        ({"curriculum": {"passRateCeiling": 1.5}}, "passRateCeiling"),
        ({"dualClipC": 0.5}, "dualClipC"),
        ({"temperatur": 1.0}, "temperatur"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(patch, needle):
    with pytest.raises(ValidationError) as info:
        RLConfig.model_validate(patch)
    assert needle in str(info.value)


def test_example_is_a_valid_rlrun_resource_and_round_trips():
    from codekiln.operator.resources import RLRun

    doc = yaml.safe_load(EXAMPLE.read_text())
    res = RLRun.model_validate(doc)
    assert res.spec.sandbox_pool_ref.name == "rewards"  # the pool of examples/sandboxpool.yaml
    cfg = RLConfig.model_validate(doc["spec"]["rl"])
    assert RLConfig.model_validate(cfg.to_wire()) == cfg
    plan = cfg.stage_plan()
    assert [(s.max_response_tokens, s.rollouts_per_prompt) for s in plan] == [(24, 8), (32, 12)]
    assert cfg.total_steps == sum(s.steps for s in plan)


def test_every_policy_gradient_algorithm_has_the_estimator_the_trainer_looks_up():
    """spec.rl.algorithm is the key the update path reads (DPO has no advantages; its loss is dpo_update)."""
    import typing

    import torch

    from codekiln.workloads.rl.advantages import ADVANTAGE_ESTIMATORS, compute_advantages

    algorithms = set(typing.get_args(RLConfig.model_fields["algorithm"].annotation))
    assert algorithms - {"dpo"} == set(ADVANTAGE_ESTIMATORS)
    rewards, groups = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1])
    assert compute_advantages("dr_grpo", rewards, groups).tolist() == [0.5, -0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="algorithm 'dpo' has no advantage estimator"):
        compute_advantages("dpo", rewards, groups)
