"""pass@k through the real sandbox: scripted endpoints (canonical solutions, ``pass``) and the served model."""

from __future__ import annotations

import json

import pytest
from llm.helpers import prompt_of, reply, scripted_server

from codekiln.workloads.eval.code import run_code_benchmark
from codekiln.workloads.eval.config import CodeBenchmarkConfig, EvalConfig
from codekiln.workloads.eval.generators import EndpointGenerator, TorchGenerator
from codekiln.workloads.eval.runner import run_eval
from codekiln.workloads.llm.client import LLMClient
from codekiln.workloads.llm.config import LLMConfig
from codekiln.workloads.sandbox.humaneval import load_problems

LIMIT = 12
CANONICAL = {p.prompt: p.canonical_solution for p in load_problems()}


def _generator(url: str) -> EndpointGenerator:
    return EndpointGenerator(LLMClient(LLMConfig(base_url=url, cache=False, backoff_s=0.01)))


def test_a_model_returning_canonical_solutions_scores_pass1_one(sandbox_url):
    cfg = EvalConfig(benchmarks=[{"source": "humaneval", "limit": LIMIT}])
    with scripted_server(lambda p, b, n: reply(p, CANONICAL[prompt_of(p, b)])) as url:
        res = run_code_benchmark(cfg.benchmarks[0], cfg, _generator(url), sandbox_url)
    assert res.problems == LIMIT and res.scores == {"pass@1": 1.0}
    assert res.verdicts == {"OK": LIMIT}


def test_a_model_returning_pass_scores_zero(sandbox_url):
    cfg = EvalConfig(benchmarks=[{"source": "humaneval", "limit": LIMIT}])
    with scripted_server(lambda p, b, n: reply(p, "    pass\n")) as url:
        res = run_code_benchmark(cfg.benchmarks[0], cfg, _generator(url), sandbox_url)
    assert res.scores == {"pass@1": 0.0} and res.problems == LIMIT


def test_sampled_mode_records_seeds_and_estimates_pass_at_k(sandbox_url):
    # sample i of each problem carries seed base+i; even seeds answer correctly -> 2 of 4 correct everywhere
    def handler(path, body, n):
        good = body["seed"] % 2 == 0 and body["temperature"] == 0.7
        return reply(path, CANONICAL[prompt_of(path, body)] if good else "    return None\n")

    cfg = EvalConfig(benchmarks=[{"source": "humaneval", "limit": 3}], mode="sampled", samples_per_task=4,
                     ks=[1, 2], temperature=0.7, seed=10)
    with scripted_server(handler) as url:
        res = run_code_benchmark(cfg.benchmarks[0], cfg, _generator(url), sandbox_url)
    assert res.scores["pass@1"] == pytest.approx(0.5)
    assert res.scores["pass@2"] == pytest.approx(1 - 1 / 6)
    assert res.row()["seed"] == 10 and res.row()["n"] == 4 and res.row()["temperature"] == 0.7


def test_task_jsonl_multi_language_and_missing_toolchains(sandbox_url, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    rows = [
        {"id": "py", "prompt": "def double(x):\n", "tests": ["assert double(3) == 6"]},
        {"id": "sh", "prompt": "read x\n", "language": "bash", "ioCases": [{"stdin": "4\n", "expectedStdout": "8\n"}]},
        {"id": "cob", "prompt": "", "language": "cobol", "ioCases": [{"stdin": "", "expectedStdout": "x"}]},
    ]
    tasks.write_text("\n".join(json.dumps(r) for r in rows))
    answers = {"def double(x):\n": "    return 2 * x\n", "read x\n": "echo $((x * 2))\n"}
    cfg = EvalConfig(benchmarks=[CodeBenchmarkConfig(source="jsonl", path=str(tasks))])
    with scripted_server(lambda p, b, n: reply(p, answers.get(prompt_of(p, b), ""))) as url:
        res = run_code_benchmark(cfg.benchmarks[0], cfg, _generator(url), sandbox_url)
    assert res.problems == 2 and res.scores == {"pass@1": 1.0}
    assert res.skipped == {"no_toolchain_cobol": 1}


def test_bad_task_file_names_the_line(tmp_path, sandbox_url):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x", "tests": ["assert 1"]}\n{"id": "b"}\n')
    cfg = EvalConfig(benchmarks=[{"source": "jsonl", "path": str(bad)}])
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        run_code_benchmark(cfg.benchmarks[0], cfg, None, sandbox_url)


def test_served_model_end_to_end_table_prometheus_and_in_process_parity(served_url, tiny_model_dir, sandbox_url,
                                                                        tmp_path):
    from codekiln.workloads.model.hf import load_hf
    from codekiln.workloads.rl.tokenizer import FileTokenizer

    held_out = tmp_path / "heldout"
    held_out.mkdir()
    (held_out / "a.py").write_text("import os\n\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n")
    cfg = EvalConfig(benchmarks=[{"source": "humaneval", "limit": 2}], max_tokens=16,
                     fim={"paths": [str(held_out)], "examples": 3, "maxTokens": 8},
                     needle={"contextLengths": [128, 256], "depths": [0.5], "trials": 1})
    endpoint = EndpointGenerator(LLMClient(LLMConfig(base_url=served_url, cache=False)),
                                 tokenizer_path=str(tiny_model_dir / "tokenizer.json"), context_length=640)
    rows = run_eval(cfg, endpoint, tmp_path / "eval", step=3, sandbox_url=sandbox_url, report_progress=False)
    assert [r["benchmark"] for r in rows] == ["humaneval", "fim_line", "needle_in_code"]
    assert rows[0]["problems"] == 2 and 0.0 <= rows[0]["pass@1"] <= 1.0 and rows[0]["step"] == 3
    assert set(rows[2]) >= {"accuracy@128", "accuracy@256"}
    assert "| 3 | humaneval | greedy |" in (tmp_path / "eval" / "results.md").read_text()
    prom = (tmp_path / "eval" / "metrics.prom").read_text()
    assert 'codekiln_eval_score_ratio{benchmark="humaneval",metric="pass@1",mode="greedy"}' in prom
    # the same weights in process give the same greedy completions as over HTTP
    model, _ = load_hf(tiny_model_dir)
    local = TorchGenerator(model.eval(), FileTokenizer(tiny_model_dir))
    prompts = [p.prompt for p in load_problems()[:2]]
    kw = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 12, "seed": 0, "stop": []}
    assert local.generate(prompts, **kw) == endpoint.generate(prompts, **kw)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="greedy mode"):
        EvalConfig(ks=[1, 5])
    with pytest.raises(ValueError, match="samplesPerTask"):
        EvalConfig(mode="sampled", ks=[10], samples_per_task=4)
    with pytest.raises(ValueError, match="path: required"):
        CodeBenchmarkConfig(source="jsonl")
    cfg = EvalConfig(every_steps=5)
    assert [s for s in range(0, 13) if cfg.due(s, 12)] == [0, 5, 10, 12]


def test_results_reach_status_progress(tmp_path, monkeypatch):
    from codekiln.workloads import progress

    reporter = progress.ProgressReporter(path=tmp_path / "progress.json", min_interval_s=0.0)
    monkeypatch.setattr(progress, "_REPORTER", reporter)
    held = tmp_path / "held.py"
    held.write_text("x = 1\ny = 2\nprint(x + y)\n")
    cfg = EvalConfig(fim={"paths": [str(held)], "examples": 2})
    with scripted_server(lambda p, b, n: reply(p, "y = 2")) as url:  # a model that always answers line 2
        rows = run_eval(cfg, _generator(url), tmp_path / "eval", step=7)
    assert rows[0]["benchmark"] == "fim_line" and rows[0]["examples"] == 2
    message = json.loads((tmp_path / "progress.json").read_text())["message"]
    assert message == f"eval fim_line exact_match={rows[0]['exact_match']:.3f}"
