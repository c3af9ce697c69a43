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


def test_pretrainrun_sft_from_an_export_evaluates_before_and_at_the_end(tiny_model_dir, sandbox_url, tmp_path):
    from codekiln.workloads.train.engine import init_distributed
    from codekiln.workloads.train.runner import parse_config
    from codekiln.workloads.train.trainer import Trainer

    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"add {a}"},
                                                     {"role": "assistant", "content": f"return {a} + 1"}]}) + "\n"
                            for a in range(8)))
    resource = {"apiVersion": "codekiln.dev/v1alpha1", "kind": "PretrainRun", "metadata": {"name": "t"},
                "spec": {"training": {
                    "objective": "sft", "initFrom": str(tiny_model_dir), "model": {"preset": "tiny"},
                    "data": {"path": str(data), "tokenizer": str(tiny_model_dir / "tokenizer.json")},
                    "stages": [{"name": "sft", "steps": 2, "lr": 1e-3, "seqLen": 160}], "microBatchSize": 2,
                    "outputDir": str(tmp_path / "sft"), "export": {"enabled": False},
                    "eval": {"benchmarks": [{"source": "humaneval", "limit": 2}], "maxTokens": 8,
                             "sandboxUrl": sandbox_url, "needle": {"depths": [0.5], "trials": 1}}}}}
    Trainer(parse_config(resource), init_distributed()).run()
    rows = [json.loads(line) for line in (tmp_path / "sft" / "eval" / "results.jsonl").read_text().splitlines()]
    assert [(r["step"], r["benchmark"]) for r in rows] == [(0, "humaneval"), (0, "needle_in_code"),
                                                           (2, "humaneval"), (2, "needle_in_code")]
    assert rows[1]["examples"] == 1 and "accuracy@160" in rows[1]  # the needle runs at the run's sequence lengths
