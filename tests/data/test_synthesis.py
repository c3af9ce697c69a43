"""Synthesis steps against real HTTP endpoints (scripted OpenAI-style servers) and the real sandbox."""

from __future__ import annotations

import json
import re

import pytest
from aiohttp import web
from llm.helpers import malformed, reply, scripted_server

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.registry import build_step


@pytest.fixture(scope="module")
def sandbox(local_sandbox_url):
    return local_sandbox_url


def _step(name: str, params: dict, tmp_path, url: str | None = None):
    if url is not None:
        params = {"llm": {"baseUrl": url, "backoffS": 0.01, "maxRetries": 2}, **params}
    return build_step(name, params, StageContext(tmp_path, "synth"))


def _last(body) -> str:
    return body["messages"][-1]["content"] if "messages" in body else body["prompt"]


PY = '''"""Geometry helpers."""
import math


def area(r):
    """Circle area."""
    return math.pi * r * r


@staticmethod
def perimeter(r):
    return 2 * math.pi * r
'''
NOTEBOOK = json.dumps({"cells": [
    {"cell_type": "markdown", "source": ["# Load data\n", "We read the CSV."]},
    {"cell_type": "code", "source": ["import csv\n", "rows = list(csv.reader(open('a.csv')))\n", "print(len(rows))"]},
]})
MARKDOWN = "# Usage\n\nSort a list in place:\n\n```python\nitems = [3, 1, 2]\nitems.sort()\nprint(items)\n```\n"


def test_seed_snippets_from_code_notebooks_and_markdown(tmp_path):
    step = _step("seed_snippets", {"minLines": 2}, tmp_path)
    docs = [Document("geo.py", PY, {"language": "python", "path": "geo.py"}),
            Document("nb", NOTEBOOK, {"path": "x.ipynb"}), Document("md", MARKDOWN, {"path": "README.md"}),
            Document("broken", "{not json", {"path": "y.ipynb"})]
    out = list(step(docs, 0, 1))
    assert [d.id for d in out] == ["geo.py#s0", "geo.py#s1", "nb#s0", "md#s0"]
    assert out[0].text.startswith("def area") and "import math" in out[0].metadata["context"]
    assert out[1].text.startswith("@staticmethod")
    assert out[2].metadata["kind"] == "notebook" and "We read the CSV" in out[2].metadata["context"]
    assert out[3].metadata["kind"] == "markdown" and "Sort a list" in out[3].metadata["context"]
    assert step.stats.rejects == {"unreadable_source": 1}


def test_instruction_generation_grounds_mixes_styles_and_caches(tmp_path):
    def handler(path, body, n):
        text = _last(body)
        if text.startswith("Invent a new style"):
            return reply(path, "a pirate's bug report\nextra line")
        style = re.search(r"Write it as (.*)\.\n", text).group(1)
        code = re.search(r"```\w*\n(.*?)```", text, re.S).group(1)
        return reply(path, f"[{style}] implement {code.split('(')[0].split()[-1]}")

    docs = [Document(f"d{i}", f"def fn{i}(x):\n    return x\n", {"language": "python"}) for i in range(6)]
    with scripted_server(handler) as url:
        step = _step("instruction_generation", {"styleMixRate": 0.5, "seed": 3}, tmp_path, url)
        out = list(step([Document(d.id, d.text, dict(d.metadata)) for d in docs], 0, 1))
        again = _step("instruction_generation", {"styleMixRate": 0.5, "seed": 3}, tmp_path, url)
        out2 = list(again([Document(d.id, d.text, dict(d.metadata)) for d in docs], 0, 1))
    assert len(out) == 6 and all(d.metadata["instruction"].endswith(f"implement fn{i}") for i, d in enumerate(out))
    mixed = [d for d in out if "style_parents" in d.metadata]
    assert mixed and all(d.metadata["style"] == "a pirate's bug report" for d in mixed)
    assert len(mixed) < 6 and step.stats.counters["styles_mixed"] == len(mixed)
    assert step.stats.counters["llm_prompt_tokens"] > 0 and step.stats.counters["llm_requests"] == 6 + len(mixed)
    # the rerun on the same storage is answered from the cache
    assert [d.metadata for d in out2] == [d.metadata for d in out]
    assert again.stats.counters["llm_requests"] == 0 and again.stats.counters["llm_cache_hits"] == 6 + len(mixed)


def test_response_judge_topic_difficulty_and_code_block_filters(tmp_path):
    answers = {
        "sum a list": "```python\ndef total(xs):\n    return sum(xs)\n```",
        "reverse a string": "```python\ndef rev(s) return s[::-1]\n```",  # does not parse
        "parse a date": "Use datetime.strptime.",  # no code block
        "sort numbers": "```python\ndef srt(xs):\n    return sorted(xs)\n```",
    }
    judge = {"sum a list": '{"score": 9}', "sort numbers": "Score: 2"}
    topic = {"sum a list": '{"topic": "Algorithms", "difficulty": 2}'}

    def handler(path, body, n):
        text = _last(body)
        if text.startswith("Judge"):
            return reply(path, next(v for k, v in judge.items() if k in text))
        if text.startswith("Classify"):
            return reply(path, next((v for k, v in topic.items() if k in text),
                                    '{"topic": "data processing", "difficulty": 7}'))
        return reply(path, answers[text])

    docs = [Document(k, "", {"instruction": k}) for k in answers]
    with scripted_server(handler) as url:
        responses = list(_step("response_generation", {}, tmp_path, url)(docs, 0, 1))
        blocks = _step("code_block_filter", {}, tmp_path)
        parsed = list(blocks(responses, 0, 1))
        judged_step = _step("llm_judge_filter", {"minScore": 6}, tmp_path, url)
        judged = list(judged_step(parsed, 0, 1))
        topics = _step("topic_difficulty", {"minDifficulty": 3}, tmp_path, url)
        kept = list(topics(judged + [Document("hard", "", {"instruction": "merge intervals"})], 0, 1))
    assert [d.id for d in parsed] == ["sum a list", "sort numbers"]
    assert blocks.stats.rejects == {"code_block_syntax_error_python": 1, "no_code_block": 1}
    assert [d.id for d in judged] == ["sum a list"] and judged[0].metadata["judge_score"] == 9
    assert judged_step.stats.rejects == {"judge_low_score": 1}
    assert [d.id for d in kept] == ["hard"] and kept[0].metadata["topic"] == "data processing"
    assert topics.stats.rejects == {"too_easy": 1} and kept[0].metadata["difficulty"] == 7


def test_difficulty_weights(tmp_path):
    docs = [Document(f"d{i}", "x", {"difficulty": d}) for i, d in enumerate([0, 5, 10])]
    out = list(_step("difficulty_weights", {"base": 1.0, "perPoint": 0.2}, tmp_path)(docs, 0, 1))
    assert [d.metadata["sample_weight"] for d in out] == [1.0, 2.0, 3.0]
    many = [Document(f"e{i}", "x", {"difficulty": 2.5}) for i in range(400)]  # weight 1.5
    step = _step("difficulty_weights", {"materialize": True, "seed": 1}, tmp_path)
    copies = list(step(many, 0, 1))
    assert 540 < len(copies) < 660 and len({d.id for d in copies}) == len(copies)


def test_malformed_429_and_500_during_a_step_are_counted_never_a_crash(tmp_path):
    seen: dict[str, int] = {}

    def handler(path, body, n):
        text = _last(body)
        seen[text] = seen.get(text, 0) + 1
        if "bad" in text:
            return malformed()
        if "down" in text:
            return web.Response(status=500)
        if "busy" in text and seen[text] == 1:
            return web.json_response({}, status=429, headers={"Retry-After": "0"})
        return reply(path, "fine")

    docs = [Document(k, "", {"instruction": k}) for k in ("ok", "bad", "down", "busy")]
    with scripted_server(handler) as url:
        step = _step("response_generation", {}, tmp_path, url)
        out = list(step(docs, 0, 1))
    assert sorted(d.id for d in out) == ["busy", "ok"]
    assert step.stats.rejects == {"llm_error_malformed_response": 1, "llm_error_http_500": 1}
    assert step.stats.counters["llm_retries"] == 2 + 2 + 1  # maxRetries 2 for bad and down, one 429 for busy


GOOD = "def triple(x):\n    return 3 * x\n"


def test_llm_rewrite_kept_only_if_it_parses_and_passes(tmp_path, sandbox):
    rewrites = {"a": f"```python\n{GOOD}```", "b": "```python\ndef triple(x) return\n```",
                "c": "```python\ndef triple(x):\n    return x\n```"}

    def handler(path, body, n):
        return reply(path, next(v for k, v in rewrites.items() if f"# doc {k}" in _last(body)))

    tests = ["assert triple(2) == 6"]
    docs = [Document(k, f"# doc {k}\ndef triple(x): return x+x+x\n", {"language": "python", "quality_llm": 0.1,
                                                                      "tests": tests}) for k in "abc"]
    docs.append(Document("hi", "def f():\n    return 1\n", {"language": "python", "quality_llm": 0.9}))
    with scripted_server(handler) as url:
        step = _step("llm_rewrite", {"threshold": 0.5, "sandboxUrl": sandbox}, tmp_path, url)
        out = list(step(docs, 0, 1))
    assert [d.id for d in out] == ["a", "hi"] and out[0].text == GOOD and out[0].metadata["rewritten"]
    assert out[1].text == "def f():\n    return 1\n"
    assert step.stats.counters["rewrite_syntax_error"] == 1 and step.stats.counters["rewrite_failed_tests"] == 1
    assert step.stats.rejects == {"rewrite_rejected": 2}


def test_self_correction_feeds_failures_back_and_records_rounds(tmp_path, sandbox):
    tests = "```python\nassert triple(2) == 6\nassert triple(0) == 0\n```"
    wrong = "```python\ndef triple(x):\n    return x + x\n```\n" + tests
    right = f"```python\n{GOOD}```\n" + tests

    def handler(path, body, n):
        msgs = body["messages"]
        if "never" in msgs[0]["content"]:
            return reply(path, wrong)
        if len(msgs) == 1:
            return reply(path, wrong)
        assert "test 1" in msgs[-1]["content"]  # the sandbox's failure came back to the model
        return reply(path, right)

    docs = [Document("fixable", "", {"instruction": "triple a number", "difficulty": 8}),
            Document("never", "", {"instruction": "never right", "difficulty": 8}),
            Document("easy", "", {"instruction": "trivial", "difficulty": 1})]
    with scripted_server(handler) as url:
        step = _step("self_correction", {"maxRounds": 3, "minDifficulty": 5, "sandboxUrl": sandbox}, tmp_path, url)
        out = list(step(docs, 0, 1))
    assert [d.id for d in out] == ["fixable", "easy"]
    assert out[0].metadata["rounds"] == 2 and out[0].metadata["tests"] == ["assert triple(2) == 6",
                                                                           "assert triple(0) == 0"]
    assert step.stats.rejects == {"not_verified": 1} and step.stats.counters["verified_round_2"] == 1


def test_dpo_pairs_and_rejection_sampling_from_sandbox_tested_samples(tmp_path, sandbox):
    def handler(path, body, n):  # even seeds answer correctly, odd seeds wrongly; task "hard" always wrong
        ok = body["seed"] % 2 == 0 and "hard" not in body["prompt"]
        return reply(path, "    return 3 * x\n" if ok else "    return x\n")

    tasks = [Document("t1", "def triple(x):\n", {"tests": ["assert triple(2) == 6"]}),
             Document("t2", "def hard(x):\n", {"tests": ["assert hard(2) == 99"]})]
    with scripted_server(handler) as url:
        dpo = _step("dpo_pairs", {"samples": 4, "seed": 10, "sandboxUrl": sandbox}, tmp_path, url)
        pairs = list(dpo([Document(d.id, d.text, dict(d.metadata)) for d in tasks], 0, 1))
        rs = _step("rejection_sampling", {"samples": 4, "keepPerPrompt": 2, "sandboxUrl": sandbox}, tmp_path, url)
        verified = list(rs([Document(d.id, d.text, dict(d.metadata)) for d in tasks], 0, 1))
    assert len(pairs) == 1 and pairs[0].metadata["chosen"] == "    return 3 * x\n"
    assert pairs[0].metadata["rejected"] == "    return x\n" and pairs[0].metadata["chosen_seed"] % 2 == 0
    assert pairs[0].metadata["pass_rate"] == 0.5 and dpo.stats.rejects == {"no_pair_all_fail": 1}
    assert [d.id for d in verified] == ["t1#r0", "t1#r1"] and all(d.metadata["verified"] for d in verified)
    assert rs.stats.rejects == {"no_verified_answer": 1}


def test_exports_write_training_files(tmp_path):
    docs = [Document("a", "", {"instruction": "do x", "response": "ok", "sample_weight": 1.4}),
            Document("b", "", {"instruction": "no answer"})]
    step = _step("export_sft", {"path": "sft"}, tmp_path)
    assert [d.id for d in step(docs, 0, 1)] == ["a"]
    line = json.loads((tmp_path / "sft" / "shard-00000.jsonl").read_text())
    assert line["messages"][1] == {"role": "assistant", "content": "ok"} and line["weight"] == 1.4
    dpo = _step("export_dpo", {"path": "dpo"}, tmp_path)
    list(dpo([Document("p", "", {"prompt": "q", "chosen": "c", "rejected": "r"})], 0, 1))
    assert json.loads((tmp_path / "dpo" / "shard-00000.jsonl").read_text())["chosen"] == "c"


def test_unreadable_verdicts_are_dropped_or_kept_and_counted(tmp_path):
    docs = [Document("a", "", {"instruction": "x", "response": "y"})]
    with scripted_server(lambda p, b, n: reply(p, "no idea")) as url:
        drop = _step("llm_judge_filter", {}, tmp_path, url)
        keep = _step("topic_difficulty", {"onUnparseable": "keep"}, tmp_path, url)
        assert list(drop(docs, 0, 1)) == [] and drop.stats.rejects == {"judge_unparseable": 1}
        assert [d.id for d in keep(docs, 0, 1)] == ["a"]
        assert keep.stats.counters["difficulty_unparseable_kept"] == 1 and "difficulty" not in docs[0].metadata
