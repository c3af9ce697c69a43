"""Periodic evaluation inside a real RL run (RLTrainer + sandbox), and the evaluator's schedule."""

from __future__ import annotations

import json

from codekiln.workloads.eval.config import EvalConfig
from codekiln.workloads.eval.hooks import RunEvaluator


def test_rl_run_reports_humaneval_before_during_and_after(tiny_model_dir, sandbox_url, tmp_path):
    from codekiln.workloads.rl.config import RLConfig
    from codekiln.workloads.rl.rewards import SandboxScorer
    from codekiln.workloads.rl.trainer import RLTrainer

    cfg = RLConfig.model_validate({
        "device": "cpu", "cpuThreads": 1, "promptsPerStep": 2, "rolloutsPerPrompt": 2, "maxResponseTokens": 8,
        "steps": 2, "dynamicSampling": {"enabled": False}, "tasks": {"source": "builtin", "limit": 2},
        "warmStart": {"initCheckpoint": str(tiny_model_dir)}, "outputDir": str(tmp_path / "run"),
        "eval": {"benchmarks": [{"source": "humaneval", "limit": 2}], "maxTokens": 8, "everySteps": 1,
                 "sandboxUrl": sandbox_url},
    })
    trainer = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "run")
    trainer.finish_setup()
    for _ in range(cfg.total_steps):
        trainer.train_step()
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval" / "results.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["benchmark"] == "humaneval" and r["problems"] == 2 and r["mode"] == "greedy" for r in rows)
    before_after = trainer.evaluator.before_after()
    assert set(before_after["humaneval"]) == {"before", "after"}
    assert trainer.model.training  # evaluation put the policy back in training mode


def test_schedule_rank_and_disabled():
    cfg = EvalConfig(every_steps=3, at_start=False)
    ev = RunEvaluator(cfg, "/nonexistent", rank=1)
    assert ev.maybe(3, 9, None, None) is None  # not rank 0: nothing runs
    assert [s for s in range(10) if cfg.due(s, 9)] == [3, 6, 9]
    assert RunEvaluator(None, "/x").maybe(0, 9, None, None) is None
    assert RunEvaluator(EvalConfig(enabled=False), "/x").maybe(0, 9, None, None) is None
