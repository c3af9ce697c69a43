"""``codekiln eval`` through the real command line (``codekiln serve`` is the session fixture served_url)."""

from __future__ import annotations

import json

from codekiln.operator.cli import build_parser, main
from codekiln.workloads.eval.cli import build_parser as eval_parser


def _flags(parser) -> set[str]:
    return {max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.dest != "help"}


def test_the_operator_cli_and_the_eval_module_share_one_flag_set():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert _flags(sub.choices["eval"]) == _flags(eval_parser())


def test_codekiln_eval_on_a_model_folder_and_a_task_file(tiny_model_dir, sandbox_url, tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t", "prompt": "def one():\n", "tests": ["assert one() == 1"]}) + "\n")
    code = main(["eval", "--model", str(tiny_model_dir), "--benchmark", f"jsonl:{tasks}", "--max-tokens", "8",
                 "--sandbox-url", sandbox_url, "--out", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "| tasks.jsonl | greedy | 1 | 0 |" in out
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert row["problems"] == 1 and row["pass@1"] in (0.0, 1.0) and row["seed"] == 0


def test_codekiln_eval_bad_input_names_the_field(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path), "--benchmark", "humaneval"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path), "--k", "5"]) == 2
    assert "eval.ks" in capsys.readouterr().err


def test_codekiln_eval_reads_the_eval_block_of_a_run_resource(tiny_model_dir, sandbox_url, tmp_path, capsys):
    import yaml

    run = tmp_path / "rlrun.yaml"
    run.write_text(yaml.safe_dump({"apiVersion": "codekiln.dev/v1alpha1", "kind": "RLRun", "metadata": {"name": "r"},
                                   "spec": {"rl": {"eval": {"benchmarks": [{"source": "humaneval", "limit": 1}],
                                                            "maxTokens": 4, "seed": 5}}}}))
    assert main(["eval", "--config", str(run), "--model", str(tiny_model_dir), "--sandbox-url", sandbox_url,
                 "--out", str(tmp_path / "out")]) == 0
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert (row["benchmark"], row["problems"], row["seed"]) == ("humaneval", 1, 5)


def test_codekiln_eval_against_an_endpoint_with_fim(served_url, tiny_model_dir, tmp_path, capsys):
    held = tmp_path / "held"
    held.mkdir()
    (held / "a.py").write_text("def f(a):\n    b = a + 1\n    return b\n")
    assert main(["eval", "--base-url", served_url, "--model-name", "hf", "--tokenizer",
                 str(tiny_model_dir / "tokenizer.json"), "--fim", str(held), "--out", str(tmp_path / "out")]) == 0
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert row["benchmark"] == "fim_line" and row["examples"] == 3 and 0.0 <= row["exact_match"] <= 1.0
    assert "fim_line" in capsys.readouterr().out
