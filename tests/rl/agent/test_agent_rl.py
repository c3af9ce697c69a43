"""Agentic RL through the RL trainer against a real sandbox: trajectory warm start, GRPO with KAT
rescaling on multi-turn rollouts, RFT with reference trajectories and early stop on drift."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from codekiln.workloads.rl.config import RLConfig
from codekiln.workloads.rl.rewards import SandboxScorer
from codekiln.workloads.rl.trainer import RLTrainer

PY = shutil.which("python3", path="/usr/bin:/bin")


def _cfg(tmp_path, algorithm: str) -> RLConfig:
    return RLConfig.model_validate({
        "algorithm": algorithm, "seed": 0, "device": "cpu", "steps": 2, "promptsPerStep": 2, "rolloutsPerPrompt": 2,
        "maxResponseTokens": 24, "temperature": 1.0,
        "model": {"preset": "tiny", "vocabSize": "auto", "dim": 32, "nHeads": 4, "nKvHeads": 2, "ffnDim": 64,
                  "maxSeqLen": 1024},
        "dynamicSampling": {"enabled": False}, "curriculum": {"enabled": False},
        "kat": {"difficultyLambda": 0.5, "entropyMu": 0.5}, "rftMaxDivergence": 0.5,
        "agent": {"maxTurns": 1, "maxTotalTokens": 1000, "systemPrompt": "compact", "maxParallelRollouts": 4},
        "tasks": {"source": "swe", "path": str(tmp_path / "tasks" / "tasks.jsonl"),
                  "generate": {"modules": ["statistics"], "maxTasks": 2, "perModule": 2,
                               "statementDetailLines": 0}},
        "warmStart": {"sftSteps": 2, "sftLr": 0.001, "sftCorrectFraction": 0.5},
        "outputDir": str(tmp_path / "out"),
    })


@pytest.mark.skipif(PY is None, reason="needs a system python3 (the interpreter the sandbox runs)")
def test_grpo_with_kat_on_trajectories_and_rft_with_references(url, tmp_path):
    trainer = RLTrainer(_cfg(tmp_path, "grpo"), SandboxScorer(url), tmp_path / "out")
    assert (tmp_path / "tasks" / "tasks.jsonl").is_file() and len(trainer.tasks) == 2  # tasks.generate
    losses = trainer.warm_start()
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert all(r.resolved for r in trainer.agent.references.values())  # references really resolve their task
    m = trainer.train_step()
    assert m["trained_rollouts"] == 4 and math.isfinite(m["loss"]) and not m["skipped"]
    trajs = trainer.agent.last_trajectories
    assert len(trajs) == 4 and all(t.turns == 1 for t in trajs)
    assert m["pass_rate"] == sum(t.resolved for t in trajs) / 4

    rft = trainer  # the same policy and cached reference trajectories, now with RFT
    rft.cfg = rft.cfg.model_copy(update={"algorithm": "rft"})
    before = {k: v.clone() for k, v in rft.model.state_dict().items()}
    m = rft.train_step()
    trajs = rft.agent.last_trajectories
    # a (nearly) random policy strays from the reference turn at once: rollouts are stopped in their first turn
    aborted = [t for t in trajs if t.finish == "aborted"]
    assert aborted and all(t.turns == 1 and t.reward == 0.0 and not t.test_results for t in aborted)
    assert m["trained_rollouts"] == 6  # 2 groups × (2 rollouts + the reference trajectory)
    assert m["grad_norm"] > 0 and any(not torch.equal(before[k], v) for k, v in rft.model.state_dict().items())
