"""End-to-end pieces against a real local sandbox server: rewards, GRPO/DAPO/DPO/RFT steps,
checkpoint/resume of the whole RL state, and the local runner."""

from __future__ import annotations

import json

import pytest
import torch

from codekiln.workloads.rl.config import RLConfig
from codekiln.workloads.rl.rewards import SandboxScorer, score_batch
from codekiln.workloads.rl.rft import divergence
from codekiln.workloads.rl.tasks import load_tasks
from codekiln.workloads.rl.trainer import RLTrainer


@pytest.fixture(scope="module")
def sandbox_url():
    from codekiln.workloads.sandbox.local import local_server

    with local_server() as url:
        yield url


MODEL = {"preset": "tiny", "maxSeqLen": 128}


@pytest.fixture(scope="module")
def warm_policy(tmp_path_factory):
    """One warm-started policy (SFT on the task format) shared by the tests, saved as a checkpoint."""
    cfg = RLConfig.model_validate({"model": MODEL, "device": "cpu", "cpuThreads": 1, "tasks": {"limit": 4},
                                   "warmStart": {"sftSteps": 100, "sftCorrectFraction": 0.5}})
    trainer = RLTrainer(cfg, scorer=None, out_dir=tmp_path_factory.mktemp("warm"))
    trainer.warm_start()
    path = tmp_path_factory.mktemp("ckpt") / "policy.pt"
    torch.save({"policy": trainer.model.state_dict()}, path)
    return str(path)


def _cfg(tmp_path, init=None, **over) -> RLConfig:
    base = {
        "model": MODEL,
        "device": "cpu", "cpuThreads": 1, "promptsPerStep": 2, "rolloutsPerPrompt": 4, "maxResponseTokens": 20,
        "steps": 4, "optimizer": {"lr": 1e-3}, "microBatchRollouts": 3,
        "kat": {"difficultyLambda": 0.5, "entropyMu": 0.5},
        "dynamicSampling": {"enabled": False}, "tasks": {"source": "builtin", "limit": 4},
        "warmStart": {"initCheckpoint": init} if init else {"sftSteps": 30, "sftCorrectFraction": 0.5},
        "outputDir": str(tmp_path / "run"), "checkpoint": {"everySteps": 2},
    }
    base.update(over)
    return RLConfig.model_validate(base)


def test_rewards_come_from_running_the_tests(sandbox_url):
    tasks = load_tasks("builtin")
    add, sub = tasks[0], tasks[1]
    scorer = SandboxScorer(sandbox_url)
    scores = scorer.score([add, add, sub, add], [add.prompt + add.reference, add.prompt + sub.reference,
                                                 sub.prompt + sub.reference, add.prompt + add.reference])
    assert [s.passed for s in scores] == [True, False, True, True]
    assert scores[0].pass_fraction == 1.0 and scores[1].pass_fraction < 1.0
    assert scorer.executions == 3  # the repeated program is served from the cache


def test_score_batch_applies_overlong_penalty_and_format_reward(sandbox_url, tmp_path):
    trainer = RLTrainer(_cfg(tmp_path), SandboxScorer(sandbox_url), tmp_path / "o")
    from codekiln.workloads.rl.batch import RolloutBatch

    tok, task = trainer.tokenizer, trainer.tasks[0]
    good = tok.encode(task.reference) + [tok.eot_id]
    long_bad = tok.encode("    return 0 " + "x" * 20)
    batch = RolloutBatch(prompts=[tok.encode(task.prompt)] * 2, responses=[good, long_bad],
                         old_logp=torch.zeros(2, 33), group_ids=torch.zeros(2, dtype=torch.long),
                         task_ids=[task.id] * 2, truncated=torch.tensor([False, True]))
    stats = score_batch(batch, trainer.tasks_by_id, tok.decode, trainer.scorer, max_response_tokens=33,
                        overlong_penalty_on=True, buffer_tokens=8, penalty_factor=1.0, format_reward=0.1)
    assert batch.passed.tolist() == [1.0, 0.0]
    # good: 1 + 0.1 format, 18 tokens <= 33-8: no penalty; bad (33 tokens): 0 + 0.1 format - (33-25)/8
    assert batch.rewards.tolist() == pytest.approx([1.1, 0.1 - 1.0])
    assert stats["pass_rate"] == 0.5 and stats["truncated_fraction"] == 0.5


@pytest.mark.parametrize("algorithm", ["grpo", "dr_grpo", "dpo", "rft"])
def test_each_algorithm_takes_steps(sandbox_url, tmp_path, algorithm, warm_policy):
    dyn = {"enabled": algorithm != "dpo", "maxNumGenBatches": 20}  # informative groups -> a real update
    cfg = _cfg(tmp_path, warm_policy, algorithm=algorithm, steps=2, dynamicSampling=dyn)
    trainer = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "o")
    trainer.warm_start()
    trainer.finish_setup()
    before = trainer.model.lm_head.weight.detach().clone()
    for _ in range(2):
        m = trainer.train_step()
    assert trainer.step == 2 and 0.0 <= m["pass_rate"] <= 1.0
    if algorithm == "dpo":
        assert trainer.dpo_ref_cache  # reference log-probs computed once and cached
    changed = not torch.equal(before, trainer.model.lm_head.weight)
    if algorithm == "dpo":
        assert changed == any(h["pairs"] > 0 for h in trainer.history)
    else:
        assert changed and all(h["loss_tokens"] > 0 for h in trainer.history)


def test_dapo_dynamic_sampling_trains_only_informative_groups(sandbox_url, tmp_path, warm_policy):
    cfg = _cfg(tmp_path, warm_policy, algorithm="dapo", steps=1,
               dynamicSampling={"enabled": True, "maxNumGenBatches": 20})
    trainer = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "o")
    trainer.warm_start()
    m = trainer.train_step()
    assert m["trained_rollouts"] == cfg.prompts_per_step * cfg.rollouts_per_prompt
    assert m["gen_batches"] >= 1


def test_rft_divergence():
    assert divergence("    return a", "    return a + b\n") == 0.0
    assert divergence("xxxx", "    return") == 1.0


def test_resume_reproduces_the_uninterrupted_run(sandbox_url, tmp_path, warm_policy):
    cfg = _cfg(tmp_path, warm_policy, steps=4)
    full = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "full")
    full.warm_start()
    full.finish_setup()
    for _ in range(4):
        full.train_step()

    first = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "split")
    first.warm_start()
    first.finish_setup()
    for _ in range(2):
        first.train_step()
    first.save()
    torch.manual_seed(999)  # disturb global RNG: the resume must restore everything it needs
    second = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "split")
    assert second.try_resume() and second.step == 2
    for _ in range(2):
        second.train_step()
    assert [h["reward_mean"] for h in second.history] == [h["reward_mean"] for h in full.history]
    assert second.curriculum.state_dict() == full.curriculum.state_dict()
    for (name, a), b in zip(full.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_run_local_writes_metrics_plot_and_checkpoint(sandbox_url, tmp_path, monkeypatch):
    from codekiln.workloads.rl.runner import run_local

    monkeypatch.setenv("CODEKILN_SANDBOX_URL", sandbox_url)
    cfg = _cfg(tmp_path, steps=2)
    resource = {"apiVersion": "codekiln.dev/v1alpha1", "kind": "RLRun", "metadata": {"name": "t"},
                "spec": {"rl": cfg.to_wire()}}
    assert run_local(resource) == 0
    out = tmp_path / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and {"start", "end"} <= metrics["evals"].keys()
    assert (out / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoints" / "rl_state.pt").exists()  # checkpoint.dir is relative to outputDir
    bad = {**resource, "spec": {"rl": {**cfg.to_wire(), "clipRatioLow": 2}}}
    assert run_local(bad) == 2


def test_in_pod_entry_reads_the_resource_json(sandbox_url, tmp_path, monkeypatch, warm_policy):
    from codekiln.workloads.rl.__main__ import main

    monkeypatch.setenv("CODEKILN_SANDBOX_URL", sandbox_url)
    cfg = _cfg(tmp_path, warm_policy, steps=1)
    path = tmp_path / "resource.json"
    path.write_text(json.dumps({"apiVersion": "codekiln.dev/v1alpha1", "kind": "RLRun", "metadata": {"name": "p"},
                                "spec": {"rl": cfg.to_wire()}}))
    assert main(["--config", str(path)]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][0]["step"] == 1
    assert main(["--config", str(tmp_path / "missing.json")]) == 2


@pytest.fixture(scope="module")
def pretrain_export(tmp_path_factory):
    """What a PretrainRun exports: a Hugging Face Llama folder with codekiln's BPE tokenizer.json."""
    from codekiln.workloads.data.tokenizer import save_tokenizer, train_bpe
    from codekiln.workloads.model.config import ModelConfig
    from codekiln.workloads.model.hf import export_hf
    from codekiln.workloads.model.transformer import Transformer

    tasks = load_tasks("builtin")
    tok = train_bpe([t.prompt + t.reference for t in tasks] * 20, vocab_size=300)
    tok_path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    save_tokenizer(tok, tok_path)
    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", vocab_size=tok.get_vocab_size(), dim=48, n_heads=4, n_kv_heads=2, max_seq_len=128)
    model = Transformer(cfg)
    folder = export_hf(model, cfg, tmp_path_factory.mktemp("pretrain") / "hf", tokenizer_json=tok_path)
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


def test_rl_continues_from_a_pretrain_export(sandbox_url, tmp_path, pretrain_export):
    from codekiln.workloads.rl.tokenizer import FileTokenizer

    folder, weights = pretrain_export
    cfg = _cfg(tmp_path, str(folder), steps=1)  # spec.rl.model says dim 64: the export's shape (48) wins
    trainer = RLTrainer(cfg, SandboxScorer(sandbox_url), tmp_path / "o")
    assert isinstance(trainer.tokenizer, FileTokenizer) and trainer.tokenizer.path == folder / "tokenizer.json"
    assert trainer.model.cfg.dim == 48
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in weights.items())
    task = trainer.tasks[0]
    ids = trainer.tokenizer.encode(task.prompt + task.reference)
    assert len(ids) < len(task.prompt + task.reference) / 2  # BPE, not characters
    assert trainer.tokenizer.decode(ids) == task.prompt + task.reference
    trainer.finish_setup()
    m = trainer.train_step()
    assert trainer.step == 1 and 0.0 <= m["pass_rate"] <= 1.0 and torch.isfinite(torch.tensor(m["loss"]))


def test_bad_pretrain_inputs_name_the_field(tmp_path, pretrain_export):
    folder, _ = pretrain_export
    with pytest.raises(ValueError, match="tokenizer: .*missing.json does not exist"):
        RLTrainer(_cfg(tmp_path, str(folder), tokenizer=str(tmp_path / "missing.json")), None, tmp_path / "o")
    with pytest.raises(ValueError, match="warmStart.initCheckpoint .*nowhere does not exist"):
        RLTrainer(_cfg(tmp_path, str(tmp_path / "nowhere")), None, tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="warmStart.initCheckpoint .*config.json"):
        RLTrainer(_cfg(tmp_path, str(empty)), None, tmp_path / "o")
    big = tmp_path / "big.json"  # a tokenizer with more ids than the exported model has rows
    from codekiln.workloads.data.tokenizer import save_tokenizer, train_bpe

    save_tokenizer(train_bpe([f"word{i} token{i * 7} " * 3 for i in range(3000)], vocab_size=2000), big)
    with pytest.raises(ValueError, match="vocabulary .* is smaller than the tokenizer's"):
        RLTrainer(_cfg(tmp_path, str(folder), tokenizer=str(big)), None, tmp_path / "o")


def test_humaneval_task_set_is_scored_by_its_check_function(sandbox_url):
    tasks = load_tasks("humaneval")
    assert len(tasks) == 164 and tasks[0].id == "HumanEval/0" and tasks[0].setup.lstrip().startswith("METADATA")
    picked = tasks[:6]
    scorer = SandboxScorer(sandbox_url)
    right = scorer.score(picked, [t.prompt + t.reference for t in picked])
    wrong = scorer.score(picked, [t.prompt + "    return None\n" for t in picked])
    assert [s.passed for s in right] == [True] * 6
    assert [s.passed for s in wrong] == [False] * 6
    assert RLConfig.model_validate({"tasks": {"source": "humaneval", "limit": 8}}).tasks.source == "humaneval"
