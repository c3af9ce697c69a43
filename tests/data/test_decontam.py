"""Decontamination: planted HumanEval copies are caught in SFT, DPO and RL-task shaped data; real code is not."""

from __future__ import annotations

import json
import textwrap

import pytest

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.decontam import BenchmarkIndex, Decontaminate
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.synthesis.params import DecontaminateParams
from codekiln.workloads.sandbox.humaneval import load_problems

from .conftest import stdlib_py_files


@pytest.fixture(scope="module")
def humaneval():
    return {p.task_id: p for p in load_problems()}


def _run(params: DecontaminateParams, docs: list[Document], tmp_path):
    step = Decontaminate(params, StageContext(tmp_path, "decontam"))
    kept = list(step(docs, 0, 1))
    report = [json.loads(line) for line in (tmp_path / "decontam" / "decontam" / "shard-00000.jsonl")
              .read_text().splitlines()]
    return kept, report, step.stats


def test_planted_benchmark_copies_are_dropped_and_reported(humaneval, tmp_path):
    clean = [Document(f"std:{p.name}", p.read_text(errors="replace")) for p in stdlib_py_files()[:150]]
    he0, he19, he39, he12 = (humaneval[f"HumanEval/{i}"] for i in (0, 19, 39, 12))
    planted = [
        # SFT sample: the prompt pasted inside an instruction (word 13-grams of the docstring)
        Document("sft-copy", "Here is my homework:\n" + he0.prompt + "\nplease help", {}),
        # a re-indented canonical solution inside another function (the 10-line code window survives re-indent)
        Document("code-copy", "def wrapper(numbers):\n    if True:\n" + textwrap.indent(he19.canonical_solution,
                                                                                  "        ") + "\n    return 1\n"),
        # DPO pair: only the chosen answer is contaminated (a short canonical solution, >= 4 lines)
        Document("dpo-copy", "Write a function.", {"prompt": "Write a function.", "rejected": "pass",
                                                   "chosen": he39.prompt.split('"""')[0] + he39.canonical_solution}),
        # RL task row read from JSONL: prompt in the text, the reference in metadata
        Document("rl-copy", "def longest(strings):\n",
                 {"tests": ["assert True"], "reference": he12.canonical_solution}),
    ]
    docs = clean[:60] + planted[:2] + clean[60:] + planted[2:]
    kept, report, stats = _run(DecontaminateParams(), docs, tmp_path)
    assert {r["id"] for r in report} == {"sft-copy", "code-copy", "dpo-copy", "rl-copy"}
    by_id = {r["id"]: r for r in report}
    assert by_id["sft-copy"]["kind"] == "word_ngram" and by_id["sft-copy"]["item"] == "HumanEval/0"
    assert by_id["code-copy"]["item"] == "HumanEval/19"
    assert by_id["dpo-copy"]["field"] == "chosen" and by_id["rl-copy"]["field"] == "reference"
    assert [d.id for d in kept] == [d.id for d in clean]  # no false positive on 150 stdlib files
    assert stats.rejects == {"contaminated_humaneval": 4} and stats.counters["benchmark_items"] == 164 * 4


def test_n_is_configurable(tmp_path):
    index = BenchmarkIndex(word_ngram=13, line_window=10)
    index.add("b", "item", " ".join(f"w{i}" for i in range(20)))
    twelve = " ".join(f"w{i}" for i in range(12))
    thirteen = " ".join(f"w{i}" for i in range(13))
    assert index.match(twelve) is None and index.match("x " + thirteen + " y").item == "item"
    index = BenchmarkIndex(word_ngram=100, line_window=10)  # lines only
    index.add("b", "code", "\n".join(f"x{i} = {i}" for i in range(12)))
    nine = "\n".join(f"  x{i}  =  {i}" for i in range(2, 11))
    ten = "\n".join(f"  x{i}  =  {i}" for i in range(1, 11))
    assert index.match(nine) is None and index.match(ten).kind == "line_window"


def test_task_jsonl_and_files_as_benchmarks(tmp_path):
    bench = tmp_path / "tasks.jsonl"
    bench.write_text(json.dumps({"id": "t1", "prompt": "def secret_function_name(a, b):\n",
                                 "reference": "    total = a\n    total += b\n    total *= 3\n    return total - 1\n",
                                 "tests": ["assert secret_function_name(1, 2) == 8"]}) + "\n")
    params = DecontaminateParams(benchmarks=[{"source": "jsonl", "path": str(bench)}], fields=["text"])
    docs = [Document("hit", "x = 1\ndef secret_function_name(a, b):\n    total = a\n    total += b\n"
                            "    total *= 3\n    return total - 1\n"), Document("miss", "def other():\n    return 2\n")]
    kept, report, _ = _run(params, docs, tmp_path)
    assert [d.id for d in kept] == ["miss"] and report[0]["benchmark"] == "tasks.jsonl"
    with pytest.raises(ValueError, match="path: required"):
        DecontaminateParams(benchmarks=[{"source": "files"}])
