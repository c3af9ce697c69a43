"""Tool protocol: Hermes tool calls parsed and validated; every mistake is an error observation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from codekiln.workloads.rl.agent.chat import ChatTokenizer, encode_messages
from codekiln.workloads.rl.agent.protocol import (
    TOOLS,
    ToolCall,
    ToolCallError,
    parse_tool_calls,
    plan_text,
    render_observation,
    system_prompt,
)
from codekiln.workloads.rl.tokenizer import CharTokenizer
from codekiln.workloads.special_tokens import SPECIAL_TOKENS
from codekiln.workloads.train.sft import encode_chat


def test_round_trip_of_every_tool():
    for name, spec in TOOLS.items():
        args = {k: (["t::a"] if t == "array" else 3 if t == "integer" else "x y")
                for k, (t, _, _) in spec.params.items()}
        text = f"Plan first.\n{ToolCall(name, args).render()}"
        assert parse_tool_calls(text) == [ToolCall(name, args)]
        assert plan_text(text) == "Plan first."


@pytest.mark.parametrize("text, needle", [
    ("I will just think.", "no tool call"),
    ("<tool_call>\n{\"name\": \"bash\", \"arguments\": {\"command\": \"ls\"\n</tool_call>", "invalid JSON"),
    ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "unknown tool 'rm_rf'"),
    ('<tool_call>{"name": "bash", "arguments": {"cmd": "ls"}}</tool_call>', "unknown argument 'cmd'"),
    ('<tool_call>{"name": "bash", "arguments": {}}</tool_call>', "missing argument(s) command"),
    ('<tool_call>{"name": "read_file", "arguments": {"path": "a", "start_line": "1"}}</tool_call>',
     "'start_line' must be a integer"),
    ('<tool_call>{"name": "read_file", "arguments": {"path": "a", "end_line": true}}</tool_call>', "'end_line'"),
    ('<tool_call>["bash"]</tool_call>', "expected a JSON object"),
    ('<tool_call>{"name": "bash", "arguments": [1]}</tool_call>', "arguments must be a JSON object"),
])
def test_malformed_calls_become_errors_not_exceptions(text, needle):
    out = parse_tool_calls(text)
    assert len(out) == 1 and isinstance(out[0], ToolCallError)
    assert needle in out[0].message


def test_truncated_call_and_string_arguments_and_several_calls():
    # a turn cut by the token budget: the unclosed block is still parsed
    assert parse_tool_calls('<tool_call>\n{"name": "submit", "arguments": {}}') == [ToolCall("submit", {})]
    # OpenAI wire form: arguments as a JSON string
    text = '<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>'
    assert parse_tool_calls(text) == [ToolCall("bash", {"command": "ls"})]
    two = ToolCall("run_tests", {}).render() + "\n" + ToolCall("submit", {}).render()
    assert [c.name for c in parse_tool_calls(two)] == ["run_tests", "submit"]


def test_system_prompts():
    hermes = system_prompt("hermes")
    assert "<tools>" in hermes and '"name": "str_replace"' in hermes
    for line in hermes.split("<tools>\n")[1].split("\n</tools>")[0].splitlines():
        assert json.loads(line)["type"] == "function"
    assert "str_replace(path, old_str, new_str)" in system_prompt("compact")
    with pytest.raises(ValueError, match="agent.systemPrompt"):
        system_prompt("fancy")


def _bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["def f(x):\n    return x + 1\n", "<tool_call> tests pass", "fix the bug"] * 20, trainer)
    return tok


CHAT = [
    {"role": "system", "content": system_prompt("compact")},
    {"role": "user", "content": "Fix f."},
    {"role": "assistant", "content": "Fix.\n" + ToolCall("str_replace", {"path": "m.py", "old_str": "x - 1",
                                                                          "new_str": "x + 1"}).render(),
     "failed": True},
    {"role": "tool", "content": render_observation("error: str_replace: old_str occurs 0 times")},
    {"role": "assistant", "content": "Submit.\n" + ToolCall("submit", {}).render()},
]


def test_chat_encoding_equals_the_sft_workloads_and_masks_observations_and_failed_calls():
    tok = _bpe()
    ids, mask = encode_messages(CHAT, ChatTokenizer(tok))
    ref = encode_chat(CHAT, tok)  # the SFT workload's encoder: collected trajectories train unchanged
    np.testing.assert_array_equal(np.asarray(ids), ref.tokens)
    np.testing.assert_array_equal(np.asarray(mask), ref.loss_mask)
    text = tok.decode([i for i, m in zip(ids, mask, strict=True) if m], skip_special_tokens=False)
    assert text.startswith("Submit.") and "str_replace" not in text and "tool_response" not in text
    ids2, mask2 = encode_messages(CHAT, ChatTokenizer(tok), error_masking=False)
    assert ids2 == ids and sum(mask2) > sum(mask)  # the failed call is trained only without error masking


def test_char_tokenizer_replaces_unknown_characters():
    ct = ChatTokenizer(CharTokenizer())
    assert ct.decode(ct.encode("naïve ✓")) == "na?ve ?"
    assert ct.header("tool")[0] == ct.im_start
