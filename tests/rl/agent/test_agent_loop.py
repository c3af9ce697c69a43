"""The tool loop against a real sandbox server (sessions, real bubblewrap isolation) and real tasks."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import torch

from codekiln.workloads.rl.agent.chat import ChatTokenizer
from codekiln.workloads.rl.agent.config import AgentConfig
from codekiln.workloads.rl.agent.generate import generate_tasks
from codekiln.workloads.rl.agent.protocol import ToolCall
from codekiln.workloads.rl.agent.reference import ScriptedEngine, lazy_turns, reference_turns
from codekiln.workloads.rl.agent.rollout import AgentRunner, start_trajectory, to_batch
from codekiln.workloads.rl.agent.sessions import SandboxSessions
from codekiln.workloads.rl.agent.tasks import SweTask
from codekiln.workloads.rl.engines.torch_engine import TorchEngine
from codekiln.workloads.rl.tokenizer import CharTokenizer

PY = shutil.which("python3", path="/usr/bin:/bin")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    if PY is None:
        pytest.skip("needs a system python3 (the interpreter the sandbox runs)")
    return generate_tasks(tmp_path_factory.mktemp("swe"), ("statistics",), python=PY, max_tasks=2, per_module=2)


def _live_sessions(url: str) -> list:
    return httpx.get(f"{url}/sessions", timeout=30).json()["sessions"]


def _play(url, tasks, scripts, cfg=None, **kw):
    tok = CharTokenizer()
    runner = AgentRunner(ScriptedEngine(tok, scripts), tok, SandboxSessions(url), cfg or AgentConfig(max_turns=8))
    return runner.run(tasks, 1, **kw)


def test_reference_resolves_lazy_does_not_and_sessions_are_closed(url, tasks):
    refs = _play(url, tasks, {t.instance_id: reference_turns(t) for t in tasks})
    assert all(t.resolved and t.finish == "submit" and t.reward == 1.0 for t in refs)
    assert [m["role"] for m in refs[0].messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert "edited statistics.py" in refs[0].messages[3]["content"]
    lazy = _play(url, tasks, {t.instance_id: lazy_turns(t) for t in tasks})
    assert not any(t.resolved for t in lazy) and all(t.reward == 0.0 for t in lazy)
    assert all(not t.test_results[f] for t in lazy for f in tasks[0].fail_to_pass if f in t.test_results)
    assert _live_sessions(url) == []
    # observation tokens are in the context but never trained
    batch = to_batch(refs)
    ct_text = CharTokenizer().decode
    for i in range(len(refs)):
        resp = batch.responses[i]
        trained = [tok for tok, m in zip(resp, batch.token_mask[i].tolist(), strict=False) if m]
        assert "edited" not in ct_text(trained) and "str_replace" in ct_text(trained)


def test_mistakes_become_error_observations_and_editing_tests_does_not_pay(url, tasks):
    task = tasks[0]
    fix = task.reference_calls[0]["arguments"]
    test_file = task.fail_to_pass[0].split("::")[0]
    script = [
        "I will think first.",  # no tool call
        '<tool_call>{"name": "str_replace", "arguments": {"path": "statistics.py"</tool_call>',  # bad JSON
        '<tool_call>{"name": "rm", "arguments": {}}</tool_call>',  # unknown tool
        ToolCall("read_file", {"path": "no/such.py"}).render(),  # missing file
        ToolCall("read_file", {"path": "../../etc/passwd"}).render(),  # outside the workspace
        ToolCall("bash", {"command": "definitely-not-a-command"}).render(),  # exit 127
        ToolCall("str_replace", {"path": fix["path"], "old_str": "def ", "new_str": "def"}).render(),  # not unique
        ToolCall("write_file", {"path": test_file, "content": "def test_x():\n    pass\n"}).render(),  # cheat
        ToolCall("submit", {}).render(),
    ]
    [traj] = _play(url, [task], {task.instance_id: script}, AgentConfig(max_turns=12))
    assert traj.finish == "submit" and traj.failed_calls == 7
    assert [m.get("failed", False) for m in traj.messages if m["role"] == "assistant"] == [True] * 7 + [False] * 2
    errors = [m["content"] for m in traj.messages if m["role"] == "tool"]
    assert "no tool call" in errors[0] and "invalid JSON" in errors[1] and "unknown tool" in errors[2]
    assert "exit code 127" in errors[5] and "occurs" in errors[6]
    assert not traj.resolved  # the tests were restored from the snapshot before scoring

    script2 = [ToolCall("run_tests", {}).render(), *reference_turns(task)[:1],
               ToolCall("run_tests", {}).render(), ToolCall("bash", {"command": "git status || ls"}).render(),
               ToolCall("submit", {}).render()]
    [traj2] = _play(url, [task], {task.instance_id: script2})
    obs = [m["content"] for m in traj2.messages if m["role"] == "tool"]
    assert "failed" in obs[0] and f"FAILED {task.fail_to_pass[0]}" in obs[0]
    assert obs[2].splitlines()[1].startswith(f"{len(task.tests)} passed, 0 failed"), obs[2]
    assert traj2.resolved and traj2.failed_calls == 0


def test_budgets_truncation_and_parallel_waves_with_a_real_policy(url, tasks, make_model):
    tok = CharTokenizer()
    model = make_model(torch.float32, vocab=tok.vocab_size)
    cfg = AgentConfig(max_turns=3, max_total_tokens=1200, max_parallel_rollouts=3, system_prompt="compact")
    runner = AgentRunner(TorchEngine(model), tok, SandboxSessions(url), cfg)
    trajs = runner.run(tasks, 3, max_turn_tokens=6, temperature=1.0, seed=0)
    assert len(trajs) == 6 and [t.group for t in trajs] == [0, 0, 0, 1, 1, 1]
    for t in trajs:
        assert t.finish in ("max_turns", "token_budget", "submit") and 1 <= t.turns <= 3
        # every turn samples at most 6 tokens; a truncated turn is closed with an untrained <|im_end|>
        runs, n = [], 0
        for m in t.trained[t.prompt_len:]:
            if m:
                n += 1
            elif n:
                runs.append(n)
                n = 0
        assert runs and max(runs) <= 6 and len(t.tokens) <= 1200
        assert all(m["role"] != "assistant" or m.get("failed") for m in t.messages)  # a random policy's calls fail
    assert _live_sessions(url) == []
    budget = start_trajectory(tasks[0], 0, ChatTokenizer(tok), "compact").prompt_len + 150
    small = AgentRunner(TorchEngine(model), tok, SandboxSessions(url),
                        AgentConfig(max_turns=5, max_total_tokens=budget, system_prompt="compact"))
    [t] = small.run(tasks[:1], 1, max_turn_tokens=100, seed=1)
    assert t.finish == "token_budget" and t.turns >= 1 and len(t.tokens) <= budget


def test_collect_keeps_verified_trajectories(url, tasks, tmp_path):
    from codekiln.workloads.rl.agent.collect import collect
    from codekiln.workloads.train.sft import read_chats

    stats = collect(tasks, url, tmp_path / "traj.jsonl")
    assert stats["kept"] == stats["resolved"] == len(tasks)
    rows = [json.loads(x) for x in (tmp_path / "traj.jsonl").read_text().splitlines()]
    assert rows[0]["text"].startswith("<|im_start|>system") and rows[0]["resolved"]
    assert len(read_chats(tmp_path / "traj.jsonl")) == len(tasks)  # the SFT workload reads it as is


def test_collect_with_a_served_model(url, tasks, tmp_path, served_url):
    """`codekiln serve` (real HTTP, OpenAI-compatible) as the policy: its replies drive the real tool loop."""
    from codekiln.workloads.rl.agent.collect import collect

    cfg = AgentConfig(max_turns=2, max_total_tokens=4000, system_prompt="compact")
    task = SweTask(**{**tasks[0].__dict__, "problem_statement": tasks[0].problem_statement.splitlines()[0]})
    stats = collect([task], url, tmp_path / "served.jsonl", policy=served_url, samples_per_task=2, keep="all",
                    cfg=cfg, max_turn_tokens=16, temperature=1.0)
    assert stats["trajectories"] == stats["kept"] == 2 and stats["resolved"] == 0  # a random model fixes nothing
    rows = [json.loads(x) for x in (tmp_path / "served.jsonl").read_text().splitlines()]
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles[:3] == ["system", "user", "assistant"] and "tool" in roles  # the reply got an observation
        assert row["messages"][3]["content"].startswith("<tool_response>\nerror: no tool call")
    assert _live_sessions(url) == []
