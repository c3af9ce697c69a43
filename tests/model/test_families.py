"""Every family against transformers as the oracle: random-init models built locally with transformers
(AutoConfig -> model -> save_pretrained; nothing downloaded), weights scaled so logits are large.

Checks per family: codekiln logits within 1e-4 (fp32) of transformers at lengths 1..2048, greedy 32
tokens identical, export -> transformers -> same logits, both config.json layouts; for MoE also the
router logits and the load-balancing loss; each RoPE scaling type past its original context.
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from codekiln.workloads.model.hf import export_hf, load_hf  # noqa: E402
from codekiln.workloads.model.transformer import KVCache  # noqa: E402

ATOL = 1e-4
LENGTHS = (1, 37, 2048)
VOCAB = 96
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-6)
FAMILIES = {
    "llama": ("LlamaConfig", dict(rope_theta=50000.0)),
    "llama-bias": ("LlamaConfig", dict(attention_bias=True)),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True, rope_theta=1e6)),
    "qwen3": ("Qwen3Config", dict(head_dim=16, tie_word_embeddings=True)),
    "qwen2_moe": ("Qwen2MoeConfig", dict(moe_intermediate_size=24, shared_expert_intermediate_size=40, num_experts=6,
                                         num_experts_per_tok=2, mlp_only_layers=[1])),
    "qwen3_moe": ("Qwen3MoeConfig", dict(moe_intermediate_size=24, num_experts=6, num_experts_per_tok=3,
                                         norm_topk_prob=True, head_dim=8)),
}
# each type past the original context: 2048 positions vs an original 128-512
ROPE = {
    "linear": dict(rope_type="linear", factor=4.0),
    "dynamic": dict(rope_type="dynamic", factor=4.0),
    "llama3": dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=128),
    "yarn": dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=512),
}


def _hf_model(kind: str, extra: dict, folder, layout: str = "v5", dtype=torch.float32, **more):
    """A random transformers model with large logits saved to ``folder`` (config.json in ``layout``)."""
    torch.manual_seed(0)
    cfg = getattr(transformers, kind)(**{**BASE, **extra, **more})
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # the default 0.02 init makes every logit ~0 and proves nothing
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.mul_(15.0)
    model.to(dtype).save_pretrained(folder)
    if layout == "v4":  # transformers 4 layout: rope_theta + rope_scaling at the top
        path = folder / "config.json"
        hf = json.loads(path.read_text())
        params = hf.pop("rope_parameters")
        hf["rope_theta"] = params.pop("rope_theta")
        kind_name = params.pop("rope_type")
        hf["rope_scaling"] = None if kind_name == "default" else {"type": kind_name, **params}
        path.write_text(json.dumps(hf))
    return model.float()


def _ids(n: int, b: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (b, n), generator=torch.Generator().manual_seed(n))


def _max_diff(ours, theirs, lengths=LENGTHS) -> float:
    worst, largest = 0.0, 0.0
    with torch.no_grad():
        for n in lengths:
            ids = _ids(n)
            a, b = ours(ids), theirs(ids).logits
            worst, largest = max(worst, float((a - b).abs().max())), max(largest, float(b.abs().max()))
    assert largest > 5, f"logits too small to prove parity ({largest:.2f})"
    return worst


def _greedy(model, prompt: torch.Tensor, steps: int) -> list[int]:
    cache = KVCache(model.cfg, 1, prompt.shape[1] + steps, torch.float32, torch.device("cpu"))
    out, ids = [], prompt
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids, kv_cache=cache)[:, -1].argmax(-1, keepdim=True)
            out.append(int(nxt))
            ids = nxt
    return out


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_matches_transformers_and_round_trips(name, tmp_path):
    kind, extra = FAMILIES[name]
    theirs = _hf_model(kind, extra, tmp_path / "src")
    ours, cfg = load_hf(tmp_path / "src")
    ours.eval()
    assert cfg.family == name.split("-")[0]
    diff = _max_diff(ours, theirs)
    assert diff < ATOL, f"{name}: max |logit diff| {diff:.2e}"
    prompt = _ids(12)
    theirs.generation_config.eos_token_id = None  # no early stop, no suppressed token: plain argmax
    want = theirs.generate(prompt, max_new_tokens=32, do_sample=False)[0, 12:].tolist()
    assert len(want) == 32
    assert _greedy(ours, prompt, 32) == want
    if cfg.moe is not None:  # router logits and transformers' load-balancing loss
        for layer in ours.moe_layers():
            layer.keep_router_logits = True
        ids = _ids(200, b=2)
        with torch.no_grad():
            out = theirs(ids, output_router_logits=True)
            ours(ids)
        stats = ours.router_stats()
        assert len(stats) == len(out.router_logits)
        for s, ref in zip(stats, out.router_logits, strict=True):
            torch.testing.assert_close(s.logits, ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(ours.aux_loss(), out.aux_loss, atol=1e-6, rtol=0)
    # export -> transformers -> same logits (fresh process-level load, no codekiln code)
    folder = export_hf(ours, cfg, tmp_path / "out")
    again = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert type(again) is type(theirs)
    assert _max_diff(ours, again, lengths=(300,)) < ATOL


@pytest.mark.parametrize("rope", list(ROPE))
@pytest.mark.parametrize("layout", ["v4", "v5"])
def test_rope_scaling_past_the_original_context(rope, layout, tmp_path):
    params = dict(ROPE[rope])
    kind = params.pop("rope_type")
    extra = {"rope_parameters": {"rope_type": kind, "rope_theta": 10000.0, **params}}
    if kind == "dynamic":
        extra["max_position_embeddings"] = 256  # dynamic NTK grows the base past this
    theirs = _hf_model("LlamaConfig", extra, tmp_path / "src", layout=layout)
    ours, cfg = load_hf(tmp_path / "src")
    assert cfg.rope_scaling is not None and cfg.rope_scaling.type == kind and cfg.rope_theta == 10000.0
    diff = _max_diff(ours.eval(), theirs, lengths=(1, 300, 2048))  # ascending: transformers caches dynamic growth
    assert diff < ATOL, f"{rope}/{layout}: max |logit diff| {diff:.2e}"
    export_hf(ours, cfg, tmp_path / "out")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    assert _max_diff(ours, again, lengths=(2048,)) < ATOL


def test_qwen_layout_v4_and_half_precision_shards(tmp_path):
    """Qwen2 written in the transformers 4 layout and bf16, re-exported in fp16 shards with an index."""
    _hf_model("Qwen2Config", {"rope_theta": 1e6}, tmp_path / "src", layout="v4", dtype=torch.bfloat16)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "src", dtype=torch.float32).eval()
    hf = json.loads((tmp_path / "src" / "config.json").read_text())
    assert "rope_parameters" not in hf and hf["rope_theta"] == 1e6
    ours, cfg = load_hf(tmp_path / "src")
    assert cfg.rope_theta == 1e6 and ours.embed_tokens.weight.dtype == torch.float32
    assert _max_diff(ours.eval(), theirs, lengths=(64,)) < ATOL  # same bf16-rounded weights, both in fp32
    folder = export_hf(ours, cfg, tmp_path / "out", dtype=torch.float16, max_shard_bytes=20_000)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 2 and all((folder / s).is_file() for s in shards)
    again = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    back, _ = load_hf(folder)
    with torch.no_grad():
        ids = _ids(50)
        torch.testing.assert_close(back.eval()(ids), again(ids).logits, atol=ATOL, rtol=0)
