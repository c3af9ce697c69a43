"""Model: packed document masking, KV cache, RoPE scaling, HF export parity."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from codekiln.workloads.model.config import ModelConfig, RopeScalingConfig
from codekiln.workloads.model.hf import export_hf, load_hf
from codekiln.workloads.model.transformer import KVCache, Transformer


def _model(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(preset="tiny", **kw)).eval()


def test_packed_with_document_mask_equals_separate_sequences():
    model = _model()
    lengths = [7, 12, 5]
    docs = [torch.randint(0, 512, (n,)) for n in lengths]
    packed = torch.cat(docs)[None]
    document_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        out = model(packed, position_ids=position_ids, document_ids=document_ids)[0]
        sep = torch.cat([model(d[None])[0] for d in docs])
        wrong = model(packed)[0]  # no mask: later documents see earlier ones
    torch.testing.assert_close(out, sep, atol=1e-5, rtol=0)
    assert (wrong[lengths[0]:] - sep[lengths[0]:]).abs().max() > 1e-3


def test_kv_cache_decoding_matches_full_forward():
    model = _model()
    ids = torch.randint(0, 512, (2, 10))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.cfg, batch_size=2, max_len=10, dtype=torch.float32, device=torch.device("cpu"))
        steps = [model(ids[:, :6], kv_cache=cache)]
        steps += [model(ids[:, t : t + 1], kv_cache=cache) for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_rope_scaling_changes_only_low_frequencies():
    base = _model(rope_theta=10000.0)
    scaled = _model(rope_theta=10000.0, rope_scaling=RopeScalingConfig(factor=4.0, original_max_position_embeddings=64))
    assert torch.equal(base.inv_freq[0], scaled.inv_freq[0])  # highest frequency untouched
    assert scaled.inv_freq[-1] == pytest.approx(base.inv_freq[-1] / 4.0)


@pytest.mark.parametrize("scaling", [None, RopeScalingConfig(factor=8.0, original_max_position_embeddings=32)])
def test_hf_export_loads_in_transformers_with_identical_logits(tmp_path, scaling):
    import transformers
    model = _model(rope_theta=20000.0, rope_scaling=scaling, max_seq_len=256)
    folder = export_hf(model, model.cfg, tmp_path / "hf")
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors"}
    hf = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 100))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() < 1e-5
    again, _ = load_hf(folder)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(ids), ours, atol=0, rtol=0)


def test_bad_model_config_names_the_field():
    with pytest.raises(ValidationError, match="nKvHeads"):
        ModelConfig(preset="tiny", n_heads=4, n_kv_heads=3)
    with pytest.raises(ValidationError, match="ropeTheta"):
        ModelConfig.model_validate({"ropeTheta": -1})


@pytest.mark.filterwarnings("ignore")
def test_flex_attention_matches_sdpa_on_packed_documents():
    sdpa = _model()
    flex = Transformer(ModelConfig(preset="tiny", attention="flex")).eval()
    flex.load_state_dict(sdpa.state_dict())
    document_ids = torch.tensor([[0] * 9 + [1] * 14 + [2] * 9, [0] * 32])
    position_ids = torch.cat([torch.arange(9), torch.arange(14), torch.arange(9)]).expand(2, 32).clone()
    position_ids[1] = torch.arange(32)
    ids = torch.randint(0, 512, (2, 32))
    kw = {"position_ids": position_ids, "document_ids": document_ids}
    with torch.no_grad():  # FlexAttention has no CPU backward; gradients are compared on GPU
        torch.testing.assert_close(flex(ids, **kw), sdpa(ids, **kw), atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="attention"):
        flex.train()(ids, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flex_attention_compiled_on_gpu_matches_sdpa():
    sdpa = _model().cuda()
    flex = Transformer(ModelConfig(preset="tiny", attention="flex")).cuda().eval()
    flex.load_state_dict(sdpa.state_dict())
    document_ids = torch.tensor([[0] * 100 + [1] * 156], device="cuda")
    ids = torch.randint(0, 512, (1, 256), device="cuda")
    out_s, out_f = sdpa(ids, document_ids=document_ids), flex(ids, document_ids=document_ids)
    torch.testing.assert_close(out_f, out_s, atol=1e-4, rtol=0)
    out_s.square().mean().backward()
    out_f.square().mean().backward()
    for (name, p), q in zip(sdpa.named_parameters(), flex.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_activation_checkpointing_gives_identical_gradients():
    plain = _model().train()
    ckpt = Transformer(ModelConfig(preset="tiny", activation_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 512, (2, 16))
    document_ids = torch.tensor([[0] * 6 + [1] * 10] * 2)
    for m in (plain, ckpt):
        m(ids, document_ids=document_ids).logsumexp(-1).mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=0, msg=name)
