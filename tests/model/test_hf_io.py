"""Loading refuses what it cannot load exactly (errors name the field); exports carry tokenizer and chat template."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from codekiln.workloads.model.config import ModelConfig, MoEConfig
from codekiln.workloads.model.hf import CheckpointError, export_hf, load_hf
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.special_tokens import EOT, IM_END, PAD, SPECIAL_TOKENS

transformers = pytest.importorskip("transformers")


def _export(tmp_path, **kw):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(preset="tiny", **kw)).eval()
    return model, export_hf(model, model.cfg, tmp_path / "m")


def _edit(folder, **changes):
    path = folder / "config.json"
    hf = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            hf.pop(k, None)
        else:
            hf[k] = v
    path.write_text(json.dumps(hf))


@pytest.mark.parametrize(("changes", "message"), [
    ({"architectures": ["MistralForCausalLM"]}, "architectures 'MistralForCausalLM' is not supported"),
    ({"use_sliding_window": True, "sliding_window": 64}, "use_sliding_window with sliding_window 64"),
    ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope_scaling.rope_type 'longrope'"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0, "partial_rotary_factor": 0.5}}, "partial_rotary_factor"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"num_key_value_heads": 4}, "self_attn.k_proj.weight has shape"),
    ({"tie_word_embeddings": None, "num_hidden_layers": 1}, "model.layers.1."),
])
def test_bad_folders_name_the_field(tmp_path, changes, message):
    _, folder = _export(tmp_path)
    _edit(folder, codekiln_model=None, **changes)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_hf(folder)


def test_untied_checkpoint_without_head_and_missing_files(tmp_path):
    _, folder = _export(tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    del state["lm_head.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lacks lm_head.weight .*tie_word_embeddings"):
        load_hf(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_hf(folder)


def test_sliding_window_wider_than_the_context_is_a_no_op(tmp_path):
    model, folder = _export(tmp_path, max_seq_len=256)
    _edit(folder, use_sliding_window=True, sliding_window=4096)
    loaded, _ = load_hf(folder)
    ids = torch.randint(0, 512, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids), model(ids), atol=0, rtol=0)


def test_export_has_tokenizer_files_and_the_sft_chat_template(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from codekiln.workloads.train.sft import encode_chat

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["def add(a, b):\n    return a + b\n"] * 20, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    model = Transformer(ModelConfig(preset="tiny", family="qwen2", tie_embeddings=True, vocab_size=300))
    folder = export_hf(model, model.cfg, tmp_path / "sft", tmp_path / "tokenizer.json", chat=True)
    names = {p.name for p in folder.iterdir()}
    assert names >= {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json"}
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert (hf_tok.eos_token, hf_tok.pad_token, hf_tok.bos_token) == (IM_END, PAD, EOT)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "add?"},
            {"role": "assistant", "content": "return a + b"}]
    ours = tok.decode(encode_chat(chat, tok).tokens.tolist(), skip_special_tokens=False)
    assert hf_tok.apply_chat_template(chat, tokenize=False) == ours
    prompt = hf_tok.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    generation = json.loads((folder / "generation_config.json").read_text())
    assert set(generation["eos_token_id"]) == {tok.token_to_id(IM_END), tok.token_to_id(EOT)}
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert hf.config.tie_word_embeddings and hf.generation_config.pad_token_id == tok.token_to_id(PAD)


def test_norm_head_is_baked_into_the_export(tmp_path):
    model, folder = _export(tmp_path, norm_head=True)
    norms = model.output_weight().norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    again, cfg = load_hf(folder)
    assert cfg.norm_head
    ids = torch.randint(0, 512, (1, 30))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=0)
        torch.testing.assert_close(again.eval()(ids), model(ids), atol=1e-5, rtol=0)


def _moe(**moe) -> Transformer:
    torch.manual_seed(0)
    m = MoEConfig(num_experts=4, top_k=2, expert_ffn_dim=24, **moe)
    return Transformer(ModelConfig(preset="tiny", family="qwen3_moe", moe=m, n_layers=1))


def test_grouped_experts_equal_a_per_token_loop_with_gradients():
    model = _moe(norm_topk_prob=True)
    layer = model.layers[0].mlp
    x = torch.randn(3, 11, 64, requires_grad=True)
    y = layer(x)
    h = x.detach().clone().requires_grad_().reshape(-1, 64)
    _, weights, index = layer.route(torch.nn.functional.linear(h, layer.gate.weight))
    rows = []
    for t in range(h.shape[0]):  # the obvious reference: every token through its k experts
        acc = torch.zeros(64)
        for j in range(2):
            e = int(index[t, j])
            gate, up = torch.nn.functional.linear(h[t], layer.experts.gate_up_proj[e]).chunk(2)
            acc = acc + weights[t, j] * torch.nn.functional.linear(torch.nn.functional.silu(gate) * up,
                                                                   layer.experts.down_proj[e])
        rows.append(acc)
    ref = torch.stack(rows).reshape(3, 11, 64)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad((y * g).sum(), x, retain_graph=True)
    (gw,) = torch.autograd.grad((y * g).sum(), layer.experts.down_proj)
    layer.experts.down_proj.grad = None
    (rx,) = torch.autograd.grad((ref * g).sum(), h, retain_graph=True)
    (rw,) = torch.autograd.grad((ref * g).sum(), layer.experts.down_proj)
    torch.testing.assert_close(gx.reshape(-1, 64), rx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, rw, atol=1e-5, rtol=1e-5)


def test_capacity_drops_and_counts_tokens_and_aux_free_bias_moves_towards_balance():
    model = _moe(capacity_factor=0.5, balancing="aux_free", bias_update_speed=0.01, z_loss_coef=1e-3)
    ids = torch.randint(0, 512, (2, 64))
    model.train()
    loss = model(ids).float().pow(2).mean() + model.moe_loss()
    metrics = model.moe_metrics()
    assert metrics["moe_capacity"] == 32  # ceil(0.5 * 128 tokens * 2 / 4)
    assert metrics["moe_dropped_tokens"] >= 128 * 2 - 4 * 32  # at most 4·32 of 256 assignments fit
    loss.backward()
    layer = model.layers[0].mlp
    counts = layer.load_counts.clone()
    model.update_moe_bias()
    assert counts.sum() == 128 * 2 and counts.max() > counts.mean()  # every routed assignment, before capacity
    # overloaded experts get less score, underloaded more (DeepSeek-V3: b_e += speed · sign(mean - load_e))
    torch.testing.assert_close(layer.expert_bias, 0.01 * torch.sign(counts.mean() - counts))
    assert layer.load_counts.sum() == 0
