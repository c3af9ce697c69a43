"""``codekiln serve``: the OpenAI-compatible server over a real exported model, over HTTP."""

from __future__ import annotations

import httpx
import pytest
import torch

from codekiln.workloads.llm.config import LLMConfig
from codekiln.workloads.llm.server import ServedModel, chat_prompt
from codekiln.workloads.special_tokens import IM_END, IM_START


def test_completions_greedy_match_an_argmax_decode_of_the_same_weights(served_url, tiny_model_dir):
    body = {"model": "x", "prompt": "def add(a, b):\n", "max_tokens": 8, "temperature": 0}
    r = httpx.post(served_url + "/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "text_completion" and data["usage"]["completion_tokens"] >= 1
    # oracle: plain argmax decoding without a KV cache on a freshly loaded copy of the export
    served = ServedModel(tiny_model_dir)
    ids = served.tokenizer.encode(body["prompt"])
    out = []
    for _ in range(data["usage"]["completion_tokens"]):
        logits = served.model(torch.tensor([ids + out]))[0, -1]
        out.append(int(logits.argmax()))
        if out[-1] in served.stop_ids:
            break
    expected = served.tokenizer.decode([t for t in out if t not in served.stop_ids])
    assert data["choices"][0]["text"] == expected
    assert data["usage"]["prompt_tokens"] == len(ids)


def test_chat_seeded_sampling_is_reproducible_and_n_gives_n_choices(served_url):
    body = {"messages": [{"role": "user", "content": "Write add"}], "max_tokens": 6, "temperature": 1.0,
            "seed": 7, "n": 3}
    a = httpx.post(served_url + "/chat/completions", json=body, timeout=60).json()
    b = httpx.post(served_url + "/chat/completions", json=body, timeout=60).json()
    assert len(a["choices"]) == 3 and a["choices"] == b["choices"]
    assert all(c["message"]["role"] == "assistant" for c in a["choices"])


def test_bad_fields_are_400_naming_the_field(served_url):
    r = httpx.post(served_url + "/completions", json={"prompt": "x", "temperature": "hot"}, timeout=30)
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    r = httpx.post(served_url + "/chat/completions", json={"messages": [{"role": "user"}]}, timeout=30)
    assert r.status_code == 400 and "messages[0]" in r.json()["error"]["message"]
    r = httpx.post(served_url + "/completions", json={"prompt": "def " * 2000}, timeout=30)
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]
    model = httpx.get(served_url + "/models", timeout=30).json()["data"][0]
    assert model["max_model_len"] == 640 and model["id"] == "hf"  # `codekiln serve DIR` names it after the folder


def test_chat_prompt_is_the_sft_format():
    text = chat_prompt([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert text == f"{IM_START}system\nbe brief{IM_END}\n{IM_START}user\nhi{IM_END}\n{IM_START}assistant\n"


def test_config_requires_an_endpoint():
    with pytest.raises(ValueError, match="baseUrl"):
        LLMConfig()
