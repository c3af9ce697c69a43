"""Training kinds start from and export to Hugging Face folders of every family.

Context extension (a stage switching RoPE scaling), an MoE PretrainRun, continued pretraining from a
transformers-made Qwen2 folder (tied embeddings), and the RLRun / DPO policy export.
"""

from __future__ import annotations

import json

import pytest
import torch

from codekiln.workloads.model.hf import load_hf
from codekiln.workloads.train.engine import init_distributed
from codekiln.workloads.train.runner import parse_config
from codekiln.workloads.train.trainer import Trainer

transformers = pytest.importorskip("transformers")


def _logits_match(folder, model, vocab: int, n: int = 96) -> None:
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.randint(0, vocab, (1, n))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model.eval()(ids), atol=1e-4, rtol=0)


def test_stage_switches_rope_scaling_loss_stays_continuous_and_export_carries_it(packed_corpus, tmp_path,
                                                                               make_resource):
    yarn = {"type": "yarn", "factor": 4.0, "originalMaxPositionEmbeddings": 32}
    res = make_resource(packed_corpus, tmp_path / "run", model={"preset": "tiny", "ropeTheta": 10000, "maxSeqLen": 128},
                        stages=[{"name": "base", "steps": 6, "lr": 2e-2, "seqLen": 32},
                                {"name": "long", "steps": 2, "lr": 2e-3, "seqLen": 64, "ropeScaling": yarn}])
    trainer = Trainer(parse_config(res), init_distributed())
    trainer.run(stop_after_steps=6)  # the end of the base stage
    before, _ = trainer.evaluate(64)
    trainer.model.set_rope(10000.0, parse_config(res).stages[1].rope_scaling)  # what the trainer does at the switch
    after, _ = trainer.evaluate(64)
    # YaRN leaves the high frequencies alone: held-out loss at the switch moves by < 2% (no reset, no spike)
    assert abs(after - before) < 0.02 * before, (before, after)
    resumed = Trainer(parse_config(res), init_distributed())
    resumed.run()  # resumes from the step-4 checkpoint and runs the long stage
    assert resumed.model.cfg.rope_scaling.type == "yarn"
    folder = tmp_path / "run" / "hf"
    hf = json.loads((folder / "config.json").read_text())
    assert hf["rope_scaling"]["rope_type"] == "yarn" and hf["rope_scaling"]["factor"] == 4.0
    model, cfg = load_hf(folder)
    assert cfg.rope_scaling.type == "yarn" and model.attention_scaling == pytest.approx(0.1 * 1.3862943611 + 1)
    _logits_match(folder, model, cfg.vocab_size, n=120)  # past the original 32 positions


def test_moe_pretrainrun_reports_expert_load_and_exports_qwen3_moe(packed_corpus, tmp_path, make_resource):
    moe = {"numExperts": 4, "topK": 2, "expertFfnDim": 48, "normTopkProb": True, "capacityFactor": 2.0,
           "balancing": "aux_free", "zLossCoef": 1e-3}
    res = make_resource(packed_corpus, tmp_path / "moe", model={"preset": "tiny", "family": "qwen3_moe", "moe": moe},
                        stages=[{"name": "s1", "steps": 4, "lr": 3e-3, "seqLen": 32}])
    trainer = Trainer(parse_config(res), init_distributed())
    with pytest.warns(UserWarning, match="aux_free: the routing bias is not part of the Qwen MoE format"):
        trainer.run()
    records = [json.loads(line) for line in (tmp_path / "moe" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "moe_load_imbalance" in r]
    assert steps and all(r["moe_capacity"] == 64 for r in steps)  # ceil(2 · 64 tokens · 2 / 4)
    bias = trainer.model.layers[0].mlp.expert_bias
    assert bias.abs().sum() > 0  # aux-free balancing moved the routing bias
    folder = tmp_path / "moe" / "hf"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["Qwen3MoeForCausalLM"]
    model, cfg = load_hf(folder)
    assert cfg.moe.balancing == "aux_free" and cfg.moe.capacity_factor == 2.0  # codekiln-only options kept
    plain = model.cfg.model_copy(update={"moe": cfg.moe.model_copy(update={"balancing": "aux_loss",
                                                                           "capacity_factor": None})})
    from codekiln.workloads.model.transformer import Transformer

    reference = Transformer(plain)  # what transformers computes: unbiased routing, no capacity limit
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith("expert_bias")},
                              strict=False)
    _logits_match(folder, reference, cfg.vocab_size)


def test_continued_pretraining_from_a_transformers_qwen2_folder(packed_corpus, tmp_path, make_resource):
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                   max_position_embeddings=512)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "qwen")
    res = make_resource(packed_corpus, tmp_path / "cpt", initFrom=str(tmp_path / "qwen"),
                        stages=[{"name": "s1", "steps": 2, "lr": 1e-3, "seqLen": 32}])
    trainer = Trainer(parse_config(res), init_distributed())
    assert trainer.model.cfg.family == "qwen2" and trainer.model.cfg.rope_theta == 10000.0
    assert trainer.model.lm_head.weight is trainer.model.embed_tokens.weight
    trainer.run()
    folder = tmp_path / "cpt" / "hf"
    hf = json.loads((folder / "config.json").read_text())
    assert hf["architectures"] == ["Qwen2ForCausalLM"] and hf["tie_word_embeddings"] is True
    model, _ = load_hf(folder)
    _logits_match(folder, model, 512)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == "<|endoftext|>" and tok.chat_template


@pytest.mark.parametrize("algorithm", ["grpo", "dpo"])
def test_rl_policy_exports_with_a_loadable_tokenizer(tmp_path, algorithm):
    from codekiln.workloads.rl.config import RLConfig
    from codekiln.workloads.rl.trainer import RLTrainer

    cfg = RLConfig.model_validate({"model": {"preset": "tiny", "maxSeqLen": 128, "vocabSize": "auto"},
                                   "device": "cpu", "algorithm": algorithm, "tasks": {"limit": 2},
                                   "outputDir": str(tmp_path / "rl")})
    trainer = RLTrainer(cfg, scorer=None, out_dir=tmp_path / "rl")
    folder = trainer.export()
    assert folder == tmp_path / "rl" / "hf"
    _logits_match(folder, trainer.model, trainer.model.cfg.vocab_size)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    text = "def f(x):\n    return x + 1\n"
    assert tok(text, add_special_tokens=False)["input_ids"] == trainer.tokenizer.encode(text)
    assert tok.decode(trainer.tokenizer.encode(text)) == text
