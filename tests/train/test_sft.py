"""SFT: chat formatting, assistant-only loss, error masking (exact zero gradient), packing, training."""

from __future__ import annotations

import json

import numpy as np
import torch
from tokenizers import Tokenizer

from codekiln.workloads.model import ops
from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.special_tokens import IM_END
from codekiln.workloads.train.data import IGNORE_INDEX, collate
from codekiln.workloads.train.engine import init_distributed
from codekiln.workloads.train.runner import parse_config
from codekiln.workloads.train.sft import encode_chat, pack_chats, sft_train
from codekiln.workloads.train.trainer import Trainer

CHAT = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Sum a list."},
    {"role": "assistant", "content": "run: python -c 'print(sum[1,2])'", "failed": True},
    {"role": "tool", "content": "TypeError: 'builtin_function_or_method' object is not subscriptable"},
    {"role": "assistant", "content": "I indexed sum; call it instead: sum([1, 2])"},
]


def _tok(packed_corpus) -> Tokenizer:
    return Tokenizer.from_file(str(packed_corpus / "tokenizer.json"))


def _spans(tok, messages):
    """Token span [lo, hi) of each message body (content + <|im_end|>)."""
    spans, pos = [], 0
    for m in messages:
        header = 1 + len(tok.encode(f"{m['role']}\n", add_special_tokens=False).ids)
        body = len(tok.encode(m["content"], add_special_tokens=False).ids) + 1
        spans.append((pos + header, pos + header + body))
        pos += header + body + len(tok.encode("\n", add_special_tokens=False).ids)
    return spans


def test_loss_mask_covers_only_successful_assistant_turns(packed_corpus):
    tok = _tok(packed_corpus)
    sample = encode_chat(CHAT, tok)
    spans = _spans(tok, CHAT)
    assert tok.decode(sample.tokens[slice(*spans[4])].tolist(), skip_special_tokens=False).endswith(IM_END)
    want = np.zeros(sample.tokens.size, dtype=bool)
    want[slice(*spans[4])] = True  # only the reflection; the failed call and all other roles carry no loss
    np.testing.assert_array_equal(sample.loss_mask, want)


def test_error_masked_tokens_get_exactly_zero_gradient(packed_corpus):
    tok = _tok(packed_corpus)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(preset="tiny"))
    spans = _spans(tok, CHAT)
    packed = pack_chats([encode_chat(CHAT, tok), encode_chat(CHAT[:2] + CHAT[4:], tok)], 256, pad_id=1)
    assert len(packed) == 1  # both chats share one packed sequence
    seq, mask = packed[0]
    batch = collate([seq], [mask])

    hidden = model.hidden_states(batch["input_ids"], position_ids=batch["position_ids"],
                                 document_ids=batch["document_ids"])
    hidden.retain_grad()
    loss = ops.linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), model.lm_head.weight,
                                    batch["labels"].reshape(-1), reduction="sum")
    loss.backward()
    grad = hidden.grad[0].abs().sum(-1)
    failed_targets = range(*spans[2])
    predicting_failed = [t - 1 for t in failed_targets]
    assert torch.count_nonzero(grad[predicting_failed]) == 0  # exactly zero, not merely small
    reflection = [t - 1 for t in range(*spans[4])]
    assert bool((grad[reflection] > 0).all())
    ignored = batch["labels"][0] == IGNORE_INDEX
    assert torch.count_nonzero(grad[ignored]) == 0
    assert model.embed_tokens.weight.grad is not None

    # Control: without the failed flag the same tokens do receive gradient.
    unmasked = encode_chat([{**m, "failed": False} for m in CHAT], tok)
    assert unmasked.loss_mask[slice(*spans[2])].all()


def test_sft_library_and_trainer_reduce_loss(packed_corpus, tmp_path, make_resource):
    tok = _tok(packed_corpus)
    chats = [[{"role": "user", "content": f"add {a} and {b}"},
              {"role": "assistant", "content": f"def f():\n    return {a} + {b}\n"}]
             for a in range(6) for b in range(4)]
    torch.manual_seed(0)
    model = Transformer(ModelConfig(preset="tiny", vocab_size=tok.get_vocab_size()))
    losses = sft_train(model, tok, chats, steps=30, lr=3e-3, seq_len=128, micro_batch_size=4)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])

    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
    resource = make_resource(data, tmp_path / "sft", objective="sft",
                             data={"path": str(data), "tokenizer": str(packed_corpus / "tokenizer.json")},
                             stages=[{"name": "sft", "steps": 12, "lr": 3e-3, "seqLen": 128}])
    summary = Trainer(parse_config(resource), init_distributed()).run()
    records = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    loss = [r["loss"] for r in records if "loss" in r]
    assert summary["steps"] == 12 and loss[-1] < 0.8 * loss[0]
    assert (tmp_path / "sft" / "hf" / "tokenizer.json").exists()


def test_sft_continues_from_a_pretrain_export(packed_corpus, tmp_path, make_resource, capsys):
    from safetensors.torch import load_file

    from codekiln.workloads.train.runner import run_local

    pre = make_resource(packed_corpus, tmp_path / "pre", stages=[{"name": "s1", "steps": 4, "lr": 3e-3, "seqLen": 32}])
    Trainer(parse_config(pre), init_distributed()).run()
    export = tmp_path / "pre" / "hf"
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"add {a}"},
                                                     {"role": "assistant", "content": f"return {a} + 1"}]}) + "\n"
                            for a in range(8)))
    # spec.training.model asks for another width: the export's shape wins; lr ~0 leaves the weights as loaded
    sft = make_resource(data, tmp_path / "sft", objective="sft", initFrom=str(export),
                        model={"preset": "tiny", "dim": 32, "nHeads": 2, "nKvHeads": 2},
                        data={"path": str(data), "tokenizer": str(packed_corpus / "tokenizer.json")},
                        stages=[{"name": "sft", "steps": 1, "lr": 1e-12, "seqLen": 64}])
    trainer = Trainer(parse_config(sft), init_distributed())
    pretrained = load_file(str(export / "model.safetensors"))
    assert trainer.model.cfg.dim == Transformer(ModelConfig(preset="tiny")).cfg.dim != 32
    trainer.run()
    after = load_file(str(tmp_path / "sft" / "hf" / "model.safetensors"))
    for key, value in pretrained.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=1e-6, msg=key)

    missing = make_resource(data, tmp_path / "x", objective="sft", initFrom=str(tmp_path / "nope"),
                            data={"path": str(data), "tokenizer": str(packed_corpus / "tokenizer.json")})
    assert run_local(missing) == 2
    assert "initFrom: no Hugging Face folder at" in capsys.readouterr().err
